#!/usr/bin/env python3
"""Real-softphone transfer interop test: pjsua2 phones transfer calls through handover.

Three pjsua2 accounts in one Endpoint, each on its own transport:
  - agent A = 1001: UDP, registers with digest auth (the transferor);
  - target B = 1002: TCP, registers with digest auth (the transfer target);
  - customer C: UDP on its own port, never registers (a trunk-side phone, the transferee).

Scenarios (each starts with C calling 1001 and A answering):
  1. blind success: A `Call.xfer("<sip:1002@HOST:PORT;transfer=success>")`; B answers;
  2. blind success to a busy target: B answers the target INVITE 486;
  3. attended: A holds C, calls 1002 itself, B answers, A `Call.xferReplaces(consultation)`;
  4. release (no type in the Refer-To, the server's default_blind): A is released at once.
Not run by default: `blind-bare`, scenario 1 with the bare `sip:1002@HOST:PORT;transfer=success`
(pjsua copies the xfer() destination verbatim into Refer-To; without angle brackets the
parameter is a Refer-To header parameter, RFC 3261 section 20).
Each asserts the NOTIFY progress A saw (`onCallTransferStatus`), which call every phone ends up
in, and that the customer keeps its original dialog: handover bridges by re-INVITE, so no
phone ever receives a REFER or a second INVITE; and media flows between the phones that
should be talking (each one's remote RTP address is the other's own).

Prints one PASS/FAIL line per check and exits non-zero on any failure. Every wait is bounded.
On a failing scenario it prints the SIP messages the phones exchanged during it.

With --checkpoints the script prints `CHECKPOINT <name>` at points where the driver may inspect
the server, and waits (still handling SIP events) for a line on stdin before going on.
"""

import gc
import sys
import time

import pjsua2 as pj

import common
from common import check, checkpoint, failures, log, pump, sdp_direction, wait_for

DEADLINE_S = 150.0  # hard bound of all waits together (teardown adds ~2 s)
ANSWER_DELAY_S = 0.3  # phones ring this long before answering (so a 180 is seen)

phones = []  # every account, serviced (delayed answers) while waiting


def service():
    for acc in phones:
        acc.service()


class WireLog(common.WireLog):
    """`common.WireLog`, searchable by direction, first line and dialog, and printable."""

    def find(self, direction, first_line_prefix, call_id=None, since=0):
        """Message texts in `direction` whose first line starts with the prefix, optionally
        only those of one dialog (Call-ID), from message index `since` on."""
        return [
            text
            for d, _, _, text in self.messages[since:]
            if d == direction
            and text.startswith(first_line_prefix)
            and (call_id is None or message_call_id(text) == call_id)
        ]

    def dump(self, since):
        log(f"--- SIP messages of this scenario ({len(self.messages) - since}) ---")
        for d, proto, peer, text in self.messages[since:]:
            arrow = "<-" if d == "RX" else "->"
            print(f"{d} {arrow} {proto} {peer}\n{text.rstrip()}\n", flush=True)
        log("--- end of SIP messages ---")


def header_value(text, *names):
    """The first value of a header, by any of its names (full or compact), or ""."""
    wanted = [n.lower() for n in names]
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            break  # end of headers
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in wanted:
            return value.strip()
    return ""


def message_call_id(text):
    return header_value(text, "Call-ID", "i")


def message_body(text):
    parts = text.replace("\r\n", "\n").split("\n\n", 1)
    return parts[1].strip() if len(parts) == 2 else ""


class Phone(common.BasePhone):
    """An account that records registration results and answers incoming calls: 180 at once,
    then 200 after `answer_delay` seconds (or a final `reject_code` at once)."""

    def __init__(self, name):
        common.BasePhone.__init__(self, name)
        self.reject_code = None
        self.answer_delay = ANSWER_DELAY_S

    def onIncomingCall(self, prm):
        call = PhoneCall(self, f"{self.name}/in{len(self.incoming) + 1}", prm.callId)
        self.incoming.append(call)
        info = call.getInfo()
        call.call_id = info.callIdString
        log(f"{self.name}: incoming call from {info.remoteUri} to {info.localUri}")
        if self.reject_code:
            # Answered from the main loop: a final answer inside this callback makes pjsua
            # 2.15 free the INVITE's cloned rdata twice (assertion in pjsip_rx_data_free_cloned).
            call.reject_with = self.reject_code
            return
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        call.answer_at = time.monotonic() + self.answer_delay

    def service(self):
        for call in self.incoming:
            if call.reject_with is not None:
                op = pj.CallOpParam()
                op.statusCode, call.reject_with = call.reject_with, None
                try:
                    call.answer(op)
                except pj.Error as e:
                    log(f"{call.name}: answer {op.statusCode} failed: {e.info()}")
            if call.answer_at is not None and time.monotonic() >= call.answer_at:
                call.answer_at = None
                if call.state() == pj.PJSIP_INV_STATE_DISCONNECTED:
                    continue
                op = pj.CallOpParam()
                op.statusCode = 200
                call.answered_at = time.monotonic()
                try:
                    call.answer(op)
                except pj.Error as e:
                    log(f"{call.name}: answer 200 failed: {e.info()}")


class PhoneCall(common.BaseCall):
    """A call that records its states, media, offers received, and transfer events."""

    def __init__(self, acc, name, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.name = name
        self.states = []
        self.last_code = None
        self.answer_at = None
        self.reject_with = None  # final status to answer from the main loop
        self.answered_at = None  # when this phone sent its 200
        self.call_id = None  # the SIP Call-ID
        self.rx_offers = []  # SDP offers received in re-INVITEs
        self.xfer_status = []  # (code, reason, final) from onCallTransferStatus
        self.xfer_final_at = None
        self.xfer_requests = []  # Refer-To of REFERs received (must stay empty)
        self.replace_requests = 0  # INVITEs with Replaces received (must stay 0)
        self.hangup_on_xfer_success = False  # like the pjsua app: BYE after the final 2xx
        self.hung_up_self = False
        self.confirmed_at = None
        self.disconnected_at = None

    def onCallState(self, prm):
        info = self.getInfo()
        if self.call_id is None:
            self.call_id = info.callIdString
        self.states.append(info.state)
        self.last_code = info.lastStatusCode
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.monotonic()
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected_at = time.monotonic()
        log(f"{self.name}: state {info.stateText} (last {info.lastStatusCode} {info.lastReason})")

    def onCallTransferRequest(self, prm):
        # handover never REFERs a phone: record it and refuse to follow.
        self.xfer_requests.append(prm.dstUri)
        log(f"{self.name}: REFER received, Refer-To {prm.dstUri} (refused)")
        prm.statusCode = 603

    def onCallReplaceRequest(self, prm):
        self.replace_requests += 1
        log(f"{self.name}: INVITE with Replaces received")

    def onCallTransferStatus(self, prm):
        self.xfer_status.append((prm.statusCode, prm.reason, prm.finalNotify))
        log(f"{self.name}: transfer status {prm.statusCode} {prm.reason} final={prm.finalNotify}")
        if prm.finalNotify:
            self.xfer_final_at = time.monotonic()
            prm.cont = False
            if prm.statusCode // 100 == 2 and self.hangup_on_xfer_success:
                # What the pjsua app does as transferor: hang up on the final 2xx NOTIFY.
                log(f"{self.name}: transfer succeeded, hanging up")
                self.hung_up_self = True
                try:
                    self.hangup(pj.CallOpParam())
                except pj.Error as e:
                    log(f"{self.name}: hangup failed: {e.info()}")

    # --- helpers -------------------------------------------------------------------------

    def xfer_final(self):
        finals = [s for s in self.xfer_status if s[2]]
        return finals[-1] if finals else None

    def rtp_addresses(self):
        """(local RTP address published, remote RTP address sent to), or (None, None)."""
        try:
            idx = self.audio_index()
            if idx is None:
                return None, None
            return (
                self.getMedTransportInfo(idx).localRtpName,
                self.getStreamInfo(idx).remoteRtpAddress,
            )
        except pj.Error:
            return None, None


DISC = pj.PJSIP_INV_STATE_DISCONNECTED
CONF = pj.PJSIP_INV_STATE_CONFIRMED
ACTIVE = pj.PJSUA_CALL_MEDIA_ACTIVE
TWO_WAY = pj.PJMEDIA_DIR_ENCODING_DECODING


class Ctx:
    def __init__(self, args, wire, customer, agent_a, agent_b):
        self.server = args.server
        self.checkpoints = args.checkpoints
        self.wire = wire
        self.customer = customer
        self.a = agent_a
        self.b = agent_b


def hang_up_all(calls):
    """Ends whatever a failed scenario left up, so the next one starts clean."""
    for c in calls:
        if c is not None and c.state() not in (None, DISC):
            try:
                c.hangup(pj.CallOpParam())
            except pj.Error:
                pass
    wait_for(lambda: all(c is None or c.state() in (None, DISC) for c in calls), 3)


def customer_calls_a(ctx, label):
    """C calls 1001 and A answers: returns (C's call, A's call) both CONFIRMED with media, or
    None (failures reported)."""
    dest = f"sip:1001@{ctx.server}"
    log(f"{label} customer calls {dest}")
    before = len(ctx.a.incoming)
    c_call = PhoneCall(ctx.customer, "customer->1001")
    try:
        c_call.makeCall(dest, pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} customer INVITE sent", False, e.info())
        return None
    if not check(
        f"{label} agent A receives the INVITE", wait_for(lambda: len(ctx.a.incoming) > before)
    ):
        hang_up_all([c_call])
        return None
    a_call = ctx.a.incoming[-1]
    ok = check(
        f"{label} C and A calls CONFIRMED",
        wait_for(lambda: c_call.state() == CONF and a_call.state() == CONF),
        f"C states {c_call.states}, A states {a_call.states}",
    )
    ok = ok and check(
        f"{label} C and A media active",
        wait_for(lambda: c_call.audio()[0] == ACTIVE and a_call.audio()[0] == ACTIVE),
        f"C {c_call.audio()}, A {a_call.audio()}",
    )
    if not ok:
        hang_up_all([c_call, a_call])
        return None
    return c_call, a_call


def check_progress(label, call, final_code, want_ringing):
    """A's transfer status: 1xx progress in non-decreasing order, then one final `final_code`."""
    codes = [s[0] for s in call.xfer_status]
    final = call.xfer_final()
    check(
        f"{label} A's final transfer status is {final_code}",
        final is not None and final[0] == final_code,
        f"statuses {call.xfer_status}",
    )
    progress = [s[0] for s in call.xfer_status if not s[2]]
    check(
        f"{label} A saw 1xx progress in order before the final status",
        bool(progress)
        and all(c // 100 == 1 for c in progress)
        and progress == sorted(progress)
        and progress[0] == 100
        and codes[-1] == final_code
        and sum(1 for s in call.xfer_status if s[2]) == 1,
        f"codes {codes}",
    )
    if want_ringing:
        check(f"{label} A saw the target ringing (NOTIFY 180)", 180 in progress, f"codes {codes}")


def check_notify_wire(ctx, label, a_call, since, final_line):
    """A's NOTIFYs on the wire: in A's dialog, Event: refer, sipfrag bodies; the last one is
    `final_line` with Subscription-State terminated."""
    notifies = ctx.wire.find("RX", "NOTIFY ", a_call.call_id, since)
    bodies = [message_body(n).split("\n")[0].strip() for n in notifies]
    check(
        f"{label} A got NOTIFYs (Event: refer, message/sipfrag) in its own dialog",
        bool(notifies)
        and all(header_value(n, "Event", "o").lower().startswith("refer") for n in notifies)
        and all("message/sipfrag" in header_value(n, "Content-Type", "c") for n in notifies),
        f"bodies {bodies}",
    )
    last = notifies[-1] if notifies else ""
    check(
        f"{label} A's last NOTIFY is `{final_line}`, subscription terminated",
        bool(last)
        and bodies[-1] == final_line
        and header_value(last, "Subscription-State").lower().startswith("terminated"),
        f"bodies {bodies}, Subscription-State {header_value(last, 'Subscription-State')!r}",
    )


def check_no_refer_anywhere(ctx, label, calls, since):
    refers = ctx.wire.find("RX", "REFER ", None, since)
    check(
        f"{label} no phone received a REFER (handover bridges by re-INVITE)",
        not refers and all(not c.xfer_requests for c in calls if c is not None),
        f"{len(refers)} REFER received",
    )


def check_customer_kept_dialog(ctx, label, c_call, c_call_id, c_offers_before, since):
    check(
        f"{label} customer's call is still the same dialog, CONFIRMED",
        c_call.state() == CONF and c_call.call_id == c_call_id and not ctx.customer.incoming,
        f"state {c_call.state()}, Call-ID {c_call.call_id} (was {c_call_id}), "
        f"{len(ctx.customer.incoming)} incoming calls on the customer",
    )
    reinvites = ctx.wire.find("RX", "INVITE ", c_call_id, since)
    new_offers = c_call.rx_offers[c_offers_before:]
    check(
        f"{label} customer got re-INVITE(s) in its dialog, the last one a=sendrecv",
        bool(reinvites) and bool(new_offers) and sdp_direction(new_offers[-1]) == "sendrecv",
        f"{len(reinvites)} re-INVITEs, offer directions {[sdp_direction(o) for o in new_offers]}",
    )


def check_media_between(label, x, y, x_name, y_name):
    """x and y talk to each other: active two-way media, each one's RTP goes to the other's
    published address, and packets arrive on both sides."""
    ok = check(
        f"{label} {x_name} and {y_name} media active, two-way",
        wait_for(
            lambda: x.audio() == (ACTIVE, TWO_WAY) and y.audio() == (ACTIVE, TWO_WAY), 5
        ),
        f"{x_name} {x.audio()}, {y_name} {y.audio()}",
    )
    # A re-INVITE may still be under way (a NOTIFY 200 may overtake it): wait for the match.
    def paired():
        (xl, xr), (yl, yr) = x.rtp_addresses(), y.rtp_addresses()
        return xl is not None and yl is not None and xr == yl and yr == xl

    paired_ok = wait_for(paired, 5)
    (xl, xr), (yl, yr) = x.rtp_addresses(), y.rtp_addresses()
    ok = check(
        f"{label} {x_name} sends RTP to {y_name} and {y_name} to {x_name}",
        paired_ok,
        f"{x_name} local {xl} -> {xr}; {y_name} local {yl} -> {yr}",
    ) and ok
    # Counters may restart when a stream is re-created by a re-INVITE: count growth.
    seen = {"x": [x.rx_packets(), 0], "y": [y.rx_packets(), 0]}

    def grown():
        for key, call in (("x", x), ("y", y)):
            now = call.rx_packets()
            last, total = seen[key]
            seen[key] = [now, total + (now - last if now >= last else now)]
        return seen["x"][1] > 10 and seen["y"][1] > 10

    check(
        f"{label} RTP flows both ways between {x_name} and {y_name}",
        wait_for(grown, 5),
        f"{x_name} rx +{seen['x'][1]}, {y_name} rx +{seen['y'][1]}",
    )
    return ok


def customer_hangs_up(label, c_call, other, other_name):
    try:
        c_call.hangup(pj.CallOpParam())
    except pj.Error as e:
        check(f"{label} customer BYE sent", False, e.info())
    check(
        f"{label} customer hangs up: customer and {other_name} DISCONNECTED",
        wait_for(lambda: c_call.state() == DISC and other.state() == DISC),
        f"customer states {c_call.states} last {c_call.last_code}, "
        f"{other_name} states {other.states} last {other.last_code}",
    )


def success_refer_to(ctx, bare):
    """The xfer() destination asking for a success transfer to 1002. pjsua sends it verbatim
    as the Refer-To value. In the bare form (what a user typing a URI gives) the parameter is,
    by RFC 3261 section 20, a Refer-To header parameter; in brackets it is a URI parameter."""
    uri = f"sip:1002@{ctx.server};transfer=success"
    return uri if bare else f"<{uri}>"


def scenario_blind_success(ctx, bare=False):
    label = "[blind success, bare Refer-To]" if bare else "[blind success]"
    pair = customer_calls_a(ctx, label)
    if pair is None:
        return []
    c_call, a_call = pair
    c_call_id, c_offers = c_call.call_id, len(c_call.rx_offers)
    b_before = len(ctx.b.incoming)
    since = len(ctx.wire.messages)
    dest = success_refer_to(ctx, bare)
    log(f"{label} A transfers with xfer({dest})")
    a_call.hangup_on_xfer_success = False  # handover must BYE A itself
    try:
        a_call.xfer(dest, pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} A sends REFER", False, e.info())
        return [c_call, a_call]
    refers = ctx.wire.find("TX", "REFER ", a_call.call_id, since)
    log(f"{label} A's Refer-To: {header_value(refers[0], 'Refer-To', 'r') if refers else '?'}")
    check(
        f"{label} B's phone receives the transfer INVITE",
        wait_for(lambda: len(ctx.b.incoming) > b_before),
        f"{len(ctx.b.incoming) - b_before} new calls on B",
    )
    b_call = ctx.b.incoming[-1] if len(ctx.b.incoming) > b_before else None
    if b_call is not None:
        inv = ctx.wire.find("RX", "INVITE ", b_call.call_id, since)
        check(
            f"{label} B's INVITE is a late offer carrying Referred-By",
            bool(inv)
            and not message_body(inv[0])
            and bool(header_value(inv[0], "Referred-By", "b")),
            f"body {len(message_body(inv[0])) if inv else '?'} bytes, "
            f"Referred-By {header_value(inv[0], 'Referred-By', 'b') if inv else '?'!r}",
        )
    wait_for(lambda: a_call.xfer_final() is not None, 12)
    check_progress(label, a_call, 200, want_ringing=True)
    check_notify_wire(ctx, label, a_call, since, "SIP/2.0 200 OK")
    check(
        f"{label} A's call ends after the transfer, BYE from handover",
        wait_for(lambda: a_call.state() == DISC, 5)
        and bool(ctx.wire.find("RX", "BYE ", a_call.call_id, since))
        and not a_call.hung_up_self,
        f"A states {a_call.states} last {a_call.last_code}",
    )
    if b_call is None:
        return [c_call, a_call]
    check(
        f"{label} B's call CONFIRMED",
        wait_for(lambda: b_call.state() == CONF),
        f"B states {b_call.states}",
    )
    check(
        f"{label} success type: A is released only after B answered",
        b_call.answered_at is not None
        and a_call.xfer_final_at is not None
        and a_call.disconnected_at is not None
        and a_call.xfer_final_at >= b_call.answered_at
        and a_call.disconnected_at >= b_call.answered_at,
        f"B answered at {b_call.answered_at}, A's final NOTIFY at {a_call.xfer_final_at}, "
        f"A disconnected at {a_call.disconnected_at}",
    )
    check_customer_kept_dialog(ctx, label, c_call, c_call_id, c_offers, since)
    check_media_between(label, c_call, b_call, "customer", "B")
    check_no_refer_anywhere(ctx, label, [c_call, a_call, b_call], since)
    checkpoint(ctx.checkpoints, "talking 1002")
    customer_hangs_up(label, c_call, b_call, "B")
    return [c_call, a_call, b_call]


def scenario_blind_busy(ctx):
    label = "[blind busy]"
    pair = customer_calls_a(ctx, label)
    if pair is None:
        return []
    c_call, a_call = pair
    c_call_id, c_offers = c_call.call_id, len(c_call.rx_offers)
    b_before = len(ctx.b.incoming)
    since = len(ctx.wire.messages)
    ctx.b.reject_code = 486
    dest = success_refer_to(ctx, bare=False)
    log(f"{label} A transfers with xfer({dest}); B answers 486")
    try:
        a_call.xfer(dest, pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} A sends REFER", False, e.info())
        ctx.b.reject_code = None
        return [c_call, a_call]
    wait_for(lambda: a_call.xfer_final() is not None, 12)
    got_b = wait_for(lambda: len(ctx.b.incoming) > b_before, 3)
    b_call = ctx.b.incoming[-1] if got_b else None
    check(
        f"{label} B's phone got the INVITE and it ended (486)",
        b_call is not None and wait_for(lambda: b_call.state() == DISC, 3),
        f"B states {b_call.states if b_call else 'no call'}",
    )
    ctx.b.reject_code = None
    check_progress(label, a_call, 486, want_ringing=False)
    check_notify_wire(ctx, label, a_call, since, "SIP/2.0 486 Busy Here")
    # The customer is taken off hold with A's media again; let that re-INVITE finish.
    wait_for(
        lambda: len(c_call.rx_offers) > c_offers
        and sdp_direction(c_call.rx_offers[-1]) == "sendrecv"
        and c_call.audio() == (ACTIVE, TWO_WAY),
        5,
    )
    pump(0.5)
    check(
        f"{label} A's call with the customer stays up",
        a_call.state() == CONF,
        f"A states {a_call.states} last {a_call.last_code}",
    )
    check_customer_kept_dialog(ctx, label, c_call, c_call_id, c_offers, since)
    check_media_between(label, c_call, a_call, "customer", "A")
    check_no_refer_anywhere(ctx, label, [c_call, a_call, b_call], since)
    checkpoint(ctx.checkpoints, "talking 1001")
    customer_hangs_up(label, c_call, a_call, "A")
    return [c_call, a_call, b_call]


def scenario_attended(ctx):
    label = "[attended]"
    pair = customer_calls_a(ctx, label)
    if pair is None:
        return []
    c_call, a_call = pair
    c_call_id = c_call.call_id
    b_before = len(ctx.b.incoming)
    since = len(ctx.wire.messages)

    log(f"{label} A puts the customer on hold")
    try:
        a_call.setHold(pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} A setHold", False, e.info())
    check(
        f"{label} customer on hold (A local hold, customer remote hold)",
        wait_for(
            lambda: a_call.audio()[0] == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD
            and c_call.audio()[0] == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
        ),
        f"A {a_call.audio()}, customer {c_call.audio()}",
    )
    c_offers = len(c_call.rx_offers)

    dest = f"sip:1002@{ctx.server}"
    log(f"{label} A consults: calls {dest}")
    consult = PhoneCall(ctx.a, "agent1001->1002")
    try:
        consult.makeCall(dest, pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} A's consultation INVITE sent", False, e.info())
        return [c_call, a_call]
    got_b = check(
        f"{label} B receives A's consultation call",
        wait_for(lambda: len(ctx.b.incoming) > b_before),
    )
    b_call = ctx.b.incoming[-1] if got_b else None
    if b_call is None or not check(
        f"{label} consultation CONFIRMED on A and B",
        wait_for(lambda: consult.state() == CONF and b_call.state() == CONF),
        f"A states {consult.states}, B states {b_call.states}",
    ):
        return [c_call, a_call, consult, b_call]
    check_media_between(label, consult, b_call, "A (consultation)", "B")
    checkpoint(ctx.checkpoints, "consulting")
    b_call_id, b_count = b_call.call_id, len(ctx.b.incoming)

    since_refer = len(ctx.wire.messages)
    log(f"{label} A transfers with xferReplaces(consultation)")
    a_call.hangup_on_xfer_success = True  # the pjsua app's behaviour: races handover's BYE
    try:
        a_call.xferReplaces(consult, pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} A sends REFER with Replaces", False, e.info())
        return [c_call, a_call, consult, b_call]
    refers = ctx.wire.find("TX", "REFER ", a_call.call_id, since_refer)
    log(f"{label} A's Refer-To: {header_value(refers[0], 'Refer-To', 'r') if refers else '?'}")
    wait_for(lambda: a_call.xfer_final() is not None, 12)
    final = a_call.xfer_final()
    check(
        f"{label} A's final transfer status is 200",
        final is not None and final[0] == 200,
        f"statuses {a_call.xfer_status}",
    )
    check_notify_wire(ctx, label, a_call, since_refer, "SIP/2.0 200 OK")
    check(
        f"{label} both of A's calls end",
        wait_for(lambda: a_call.state() == DISC and consult.state() == DISC, 5),
        f"A/customer states {a_call.states}, A/consultation states {consult.states}",
    )
    check(
        f"{label} handover BYEs A's consultation call",
        bool(ctx.wire.find("RX", "BYE ", consult.call_id, since_refer)),
    )
    check_customer_kept_dialog(ctx, label, c_call, c_call_id, c_offers, since_refer)
    check(
        f"{label} B stays in A's consultation dialog (same call, same Call-ID, CONFIRMED)",
        b_call.state() == CONF
        and b_call.call_id == b_call_id
        and len(ctx.b.incoming) == b_count
        and b_call.replace_requests == 0,
        f"B state {b_call.state()}, Call-ID {b_call.call_id} (was {b_call_id}), "
        f"{len(ctx.b.incoming) - b_count} new calls on B",
    )
    check_media_between(label, c_call, b_call, "customer", "B")
    check_no_refer_anywhere(ctx, label, [c_call, b_call], since)
    checkpoint(ctx.checkpoints, "talking 1002")
    customer_hangs_up(label, c_call, b_call, "B")
    return [c_call, a_call, consult, b_call]


def scenario_release(ctx):
    label = "[release]"
    pair = customer_calls_a(ctx, label)
    if pair is None:
        return []
    c_call, a_call = pair
    c_call_id, c_offers = c_call.call_id, len(c_call.rx_offers)
    b_before = len(ctx.b.incoming)
    since = len(ctx.wire.messages)
    ctx.b.answer_delay = 2.0  # B rings long enough to see A released before it answers
    dest = f"sip:1002@{ctx.server}"
    log(f"{label} A transfers with xfer({dest}) (no type: default_blind = release)")
    try:
        a_call.xfer(dest, pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} A sends REFER", False, e.info())
        ctx.b.answer_delay = ANSWER_DELAY_S
        return [c_call, a_call]
    wait_for(lambda: a_call.xfer_final() is not None and a_call.state() == DISC, 5)
    b_call = ctx.b.incoming[-1] if len(ctx.b.incoming) > b_before else None
    check_progress(label, a_call, 200, want_ringing=False)
    check(
        f"{label} A's call ends at once (before B answers), BYE from handover",
        a_call.state() == DISC
        and (b_call is None or b_call.confirmed_at is None
             or a_call.disconnected_at < b_call.confirmed_at)
        and bool(ctx.wire.find("RX", "BYE ", a_call.call_id, since)),
        f"A states {a_call.states}, B states {b_call.states if b_call else 'no call yet'}",
    )
    check(
        f"{label} B's phone receives the transfer INVITE and answers",
        wait_for(lambda: len(ctx.b.incoming) > b_before and ctx.b.incoming[-1].state() == CONF),
        f"{len(ctx.b.incoming) - b_before} new calls on B",
    )
    ctx.b.answer_delay = ANSWER_DELAY_S
    b_call = ctx.b.incoming[-1] if len(ctx.b.incoming) > b_before else None
    if b_call is None:
        return [c_call, a_call]
    wait_for(lambda: c_call.audio() == (ACTIVE, TWO_WAY), 5)
    check_customer_kept_dialog(ctx, label, c_call, c_call_id, c_offers, since)
    check_media_between(label, c_call, b_call, "customer", "B")
    check_no_refer_anywhere(ctx, label, [c_call, a_call, b_call], since)
    checkpoint(ctx.checkpoints, "talking 1002")
    customer_hangs_up(label, c_call, b_call, "B")
    return [c_call, a_call, b_call]


SCENARIOS = {
    "blind": scenario_blind_success,
    "busy": scenario_blind_busy,
    "attended": scenario_attended,
    "release": scenario_release,
    "blind-bare": lambda ctx: scenario_blind_success(ctx, bare=True),
}
DEFAULT_SCENARIOS = ["blind", "busy", "attended", "release"]


def forget_calls():
    """Drops every Call object while the library is up and no call is live: pjsua2's Call
    destructor touches the call slot it had, which asserts after libDestroy."""
    for acc in phones:
        acc.incoming.clear()
    gc.collect()


def run_scenario(ctx, name):
    since = len(ctx.wire.messages)
    failed_before = len(failures)
    log(f"=== scenario {name} ===")
    calls = []
    try:
        calls = SCENARIOS[name](ctx)
    finally:
        hang_up_all(list(calls) + [c for acc in phones for c in acc.incoming])
        pump(0.3)
        calls = None
        forget_calls()
    if len(failures) > failed_before:
        ctx.wire.dump(since)
    checkpoint(ctx.checkpoints, "idle")


def main():
    common.init(DEADLINE_S, service)
    ap = common.argument_parser(__doc__.split("\n")[0], "--agent-a-port", "--agent-b-port")
    ap.add_argument(
        "--scenario",
        action="append",
        choices=sorted(SCENARIOS),
        help=f"run these scenarios (repeatable; default: {' '.join(DEFAULT_SCENARIOS)})",
    )
    args = ap.parse_args()

    wire = WireLog(args.pj_log_level)
    transports = common.start_endpoint(
        wire, args.pj_log_level, args.agent_a_port, args.agent_b_port, args.customer_port
    )
    agent_a, agent_b, customer = common.create_accounts(Phone, args.server, transports)
    phones.extend((agent_a, agent_b, customer))
    ctx = Ctx(args, wire, customer, agent_a, agent_b)

    common.check_registered((agent_a, agent_b))
    pump(0.5)  # let any Contact rewrite / re-registration settle before calling
    checkpoint(args.checkpoints, "registered")

    try:
        if not failures:
            for name in args.scenario or DEFAULT_SCENARIOS:
                run_scenario(ctx, name)
    finally:
        common.unregister((agent_a, agent_b))
        common.ep.hangupAllCalls()
        pump(0.2)
        forget_calls()
        common.shutdown((agent_a, agent_b, customer))

    return common.exit_code()

if __name__ == "__main__":
    sys.exit(main())
