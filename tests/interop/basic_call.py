#!/usr/bin/env python3
"""Real-softphone interop test: pjsua2 phones against a running handover server.

Three pjsua2 accounts in one Endpoint, each on its own transport:
  - agent 1001: UDP, registers with digest auth;
  - agent 1002: TCP, registers with digest auth (the phone connects from an ephemeral port);
  - customer: UDP on its own port, never registers (a trunk-side phone).

For each agent the customer calls it through handover; the agent auto-answers; both sides must
reach CONFIRMED with active media and RTP flowing; the customer holds (the agent must see a
sendonly offer, answer recvonly and show remote hold), resumes (active both ways), and hangs up
(both calls DISCONNECTED). At the end both agents unregister.

Prints one PASS/FAIL line per check and exits non-zero on any failure. Every wait is bounded.

With --checkpoints the script prints `CHECKPOINT <name>` at points where the driver may inspect
the server, and waits (still handling SIP events) for a line on stdin before going on.
"""

import re
import sys
import time

import pjsua2 as pj

import common
from common import BaseCall, BasePhone, check, checkpoint, failures, log, pump
from common import sdp_direction, wait_for

DEADLINE_S = 55.0  # hard bound of all waits together (teardown adds ~2 s)


class WireLog(common.WireLog):
    """`common.WireLog`, searchable by direction, first line and a header substring."""

    def find(self, direction, first_line_prefix, header=""):
        """Messages in `direction` whose first line starts with the prefix and that contain
        `header` (a substring)."""
        return [
            (proto, peer, text)
            for d, proto, peer, text in self.messages
            if d == direction and text.startswith(first_line_prefix) and header in text
        ]


def header_value(text, name):
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    return ""


class Phone(BasePhone):
    """An account that records registration results and auto-answers incoming calls."""

    def onIncomingCall(self, prm):
        call = PhoneCall(self, f"{self.name}/in", prm.callId)
        self.incoming.append(call)
        info = call.getInfo()
        log(f"{self.name}: incoming call from {info.remoteUri} to {info.localUri}")
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        call.answer_at = time.monotonic() + 0.3  # answered by the main loop


class PhoneCall(BaseCall):
    """A call that records its states, media state and the SDP it exchanged."""

    def __init__(self, acc, name, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.name = name
        self.states = []
        self.last_code = None
        self.answer_at = None
        self.rx_offers = []  # SDP offers received (initial INVITE and re-INVITEs)
        self.sdp_created = []  # (local SDP, remote SDP) pairs
        self.invite_rx = []  # whole INVITE-transaction messages received (requests, responses)
        self.invite_tx = []  # whole INVITE-transaction messages sent

    def onCallState(self, prm):
        info = self.getInfo()
        self.states.append(info.state)
        self.last_code = info.lastStatusCode
        log(f"{self.name}: state {info.stateText} (last {info.lastStatusCode} {info.lastReason})")

    def onCallSdpCreated(self, prm):
        self.sdp_created.append((prm.sdp.wholeSdp, prm.remSdp.wholeSdp))
        log(f"{self.name}: SDP created, local {sdp_direction(prm.sdp.wholeSdp)}, "
            f"remote {sdp_direction(prm.remSdp.wholeSdp) if prm.remSdp.wholeSdp else '-'}")

    def onCallTsxState(self, prm):
        # What was really on the wire: the SDP created callback shows the local SDP before
        # offer/answer negotiation applies the direction.
        e = prm.e
        if e.type != pj.PJSIP_EVENT_TSX_STATE:
            return
        body = e.body
        ts = body.tsxState
        tsx = ts.tsx
        if tsx.method != "INVITE":
            return
        if ts.type == pj.PJSIP_EVENT_RX_MSG:
            src = ts.src
            msg = src.rdata.wholeMsg
            if msg and msg not in self.invite_rx:
                self.invite_rx.append(msg)
        last = tsx.lastTx
        msg = last.wholeMsg
        if msg and msg not in self.invite_tx:
            self.invite_tx.append(msg)

def last_200_sdp(messages):
    """The SDP body of the last 200 response in `messages` ("" if none)."""
    for msg in reversed(messages):
        if msg.startswith("SIP/2.0 200"):
            parts = msg.replace("\r\n", "\n").split("\n\n", 1)
            return parts[1] if len(parts) == 2 else ""
    return ""


def run_call(customer, agent, agent_id, server, checkpoints):
    label = f"[{agent_id}]"
    dest = f"sip:{agent_id}@{server}"
    log(f"{label} customer calls {dest}")
    out = PhoneCall(customer, f"customer->{agent_id}")
    op = pj.CallOpParam(True)
    try:
        out.makeCall(dest, op)
    except pj.Error as e:
        check(f"{label} customer INVITE sent", False, e.info())
        return

    if not check(
        f"{label} agent phone receives the INVITE",
        wait_for(lambda: len(agent.incoming) > 0),
    ):
        out.hangup(pj.CallOpParam())
        wait_for(lambda: out.state() == pj.PJSIP_INV_STATE_DISCONNECTED, 5)
        return
    inc = agent.incoming[-1]
    check(
        f"{label} customer hears ringing (180 relayed)",
        wait_for(lambda: out.state() == pj.PJSIP_INV_STATE_EARLY),
        f"customer states {out.states}",
    )
    if not wait_for(lambda: time.monotonic() >= inc.answer_at, 2):
        pass
    op200 = pj.CallOpParam()
    op200.statusCode = 200
    inc.answer(op200)

    check(
        f"{label} customer call CONFIRMED",
        wait_for(lambda: out.state() == pj.PJSIP_INV_STATE_CONFIRMED),
        f"states {out.states} last {out.last_code}",
    )
    check(
        f"{label} agent call CONFIRMED",
        wait_for(lambda: inc.state() == pj.PJSIP_INV_STATE_CONFIRMED),
        f"states {inc.states} last {inc.last_code}",
    )
    active = pj.PJSUA_CALL_MEDIA_ACTIVE
    check(
        f"{label} customer media active",
        wait_for(lambda: out.audio()[0] == active),
        f"status/dir {out.audio()}",
    )
    check(
        f"{label} agent media active",
        wait_for(lambda: inc.audio()[0] == active),
        f"status/dir {inc.audio()}",
    )
    initial_offer = inc.sdp_created[0][1] if inc.sdp_created else ""
    check(
        f"{label} agent got an SDP offer in the INVITE",
        "m=audio" in initial_offer,
        f"{len(initial_offer)} bytes",
    )
    check(
        f"{label} RTP flows both ways",
        wait_for(lambda: out.rx_packets() > 10 and inc.rx_packets() > 10, 5),
        f"customer rx {out.rx_packets()} pkts, agent rx {inc.rx_packets()} pkts",
    )
    checkpoint(checkpoints, f"talking {agent_id}")

    # --- hold ---------------------------------------------------------------------------
    offers_before = len(inc.rx_offers)
    try:
        out.setHold(pj.CallOpParam(True))
    except pj.Error as e:
        check(f"{label} customer setHold", False, e.info())
    check(
        f"{label} customer shows local hold",
        wait_for(lambda: out.audio()[0] == pj.PJSUA_CALL_MEDIA_LOCAL_HOLD),
        f"status/dir {out.audio()}",
    )
    check(
        f"{label} agent shows remote hold",
        wait_for(lambda: inc.audio()[0] == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD),
        f"status/dir {inc.audio()}",
    )
    hold_offer = inc.rx_offers[offers_before] if len(inc.rx_offers) > offers_before else ""
    check(
        f"{label} agent's hold offer is a=sendonly",
        sdp_direction(hold_offer) == "sendonly",
        f"direction {sdp_direction(hold_offer) if hold_offer else 'no re-INVITE offer'}",
    )
    check(
        f"{label} agent media direction is receive-only",
        inc.audio()[1] == pj.PJMEDIA_DIR_DECODING,
        f"dir {inc.audio()[1]}",
    )
    answer = last_200_sdp(inc.invite_tx)
    check(
        f"{label} agent phone answers the hold a=recvonly",
        "m=audio" in answer and sdp_direction(answer) == "recvonly",
        f"direction {sdp_direction(answer) if answer else 'no 200 with SDP sent'}",
    )
    answer = last_200_sdp(out.invite_rx)
    check(
        f"{label} customer receives the hold answer a=recvonly",
        "m=audio" in answer and sdp_direction(answer) == "recvonly",
        f"direction {sdp_direction(answer) if answer else 'no 200 with SDP received'}",
    )
    check(
        f"{label} both calls stay CONFIRMED on hold",
        out.state() == pj.PJSIP_INV_STATE_CONFIRMED
        and inc.state() == pj.PJSIP_INV_STATE_CONFIRMED,
    )

    # --- resume -------------------------------------------------------------------------
    offers_before = len(inc.rx_offers)
    op = pj.CallOpParam(True)
    op.opt.flag = pj.PJSUA_CALL_UNHOLD
    try:
        out.reinvite(op)
    except pj.Error as e:
        check(f"{label} customer resume re-INVITE", False, e.info())
    check(
        f"{label} customer media active after resume",
        wait_for(lambda: out.audio()[0] == active),
        f"status/dir {out.audio()}",
    )
    check(
        f"{label} agent media active after resume",
        wait_for(lambda: inc.audio()[0] == active),
        f"status/dir {inc.audio()}",
    )
    resume_offer = inc.rx_offers[offers_before] if len(inc.rx_offers) > offers_before else ""
    check(
        f"{label} agent's resume offer is a=sendrecv",
        bool(resume_offer) and sdp_direction(resume_offer) == "sendrecv",
        f"direction {sdp_direction(resume_offer) if resume_offer else 'no re-INVITE offer'}",
    )
    answer = last_200_sdp(out.invite_rx)
    check(
        f"{label} customer receives the resume answer a=sendrecv",
        "m=audio" in answer and sdp_direction(answer) == "sendrecv",
        f"direction {sdp_direction(answer) if answer else 'no 200 with SDP received'}",
    )
    check(
        f"{label} media two-way after resume",
        out.audio()[1] == pj.PJMEDIA_DIR_ENCODING_DECODING
        and inc.audio()[1] == pj.PJMEDIA_DIR_ENCODING_DECODING,
        f"customer dir {out.audio()[1]}, agent dir {inc.audio()[1]}",
    )
    rx_before = (out.rx_packets(), inc.rx_packets())
    check(
        f"{label} RTP flows both ways after resume",
        wait_for(
            lambda: out.rx_packets() > rx_before[0] + 10 and inc.rx_packets() > rx_before[1] + 10,
            5,
        ),
        f"customer rx {rx_before[0]}->{out.rx_packets()}, agent rx {rx_before[1]}->{inc.rx_packets()}",
    )

    # --- hang up ------------------------------------------------------------------------
    try:
        out.hangup(pj.CallOpParam())
    except pj.Error as e:
        check(f"{label} customer BYE", False, e.info())
    disc = pj.PJSIP_INV_STATE_DISCONNECTED
    check(
        f"{label} customer call DISCONNECTED",
        wait_for(lambda: out.state() == disc),
        f"states {out.states} last {out.last_code}",
    )
    check(
        f"{label} agent call DISCONNECTED by the relayed BYE",
        wait_for(lambda: inc.state() == disc),
        f"states {inc.states} last {inc.last_code}",
    )
    check(f"{label} customer BYE answered 200", out.last_code == 200, f"last {out.last_code}")
    agent.incoming.clear()


def check_register_wire(wire, agent_id, proto, listen_port):
    """Digest auth really happened: a 401 challenge, then a REGISTER with credentials."""
    name = f"agent{agent_id}"
    user = f'username="{agent_id}"'
    challenges = [
        t
        for p, _, t in wire.find("RX", "SIP/2.0 401", "WWW-Authenticate: Digest")
        if p == proto and f"<sip:{agent_id}@" in header_value(t, "From")
    ]
    check(f"{name} got a 401 digest challenge over {proto}", bool(challenges))
    retries = [t for p, _, t in wire.find("TX", "REGISTER ", user) if p == proto]
    algo = re.search(r"algorithm=([\w-]+)", retries[0]) if retries else None
    check(
        f"{name} retried REGISTER with digest credentials",
        bool(retries) and "Authorization: Digest" in retries[0],
        f"algorithm {algo.group(1) if algo else '?'}",
    )
    if proto == "TCP":
        via = header_value(retries[0], "Via") if retries else ""
        m = re.search(r"SIP/2.0/TCP [0-9.]+:(\d+)", via)
        check(
            f"{name} registered from an ephemeral TCP port",
            bool(m) and int(m.group(1)) != listen_port,
            f"Via {via}",
        )


def check_invite_wire(wire, agent_id, proto, server):
    """The INVITE to the agent came from handover over the agent's own transport; for TCP over
    the connection the phone opened (its remote end is handover's listening address)."""
    invites = wire.find("RX", f"INVITE sip:{agent_id}@")
    got = [(p, peer) for p, peer, _ in invites]
    check(
        f"[{agent_id}] INVITE reached the agent over {proto} from {server}",
        bool(got) and all(p == proto and peer == server for p, peer in got),
        f"received {got}",
    )


def main():
    common.init(DEADLINE_S)
    ap = common.argument_parser(__doc__.split("\n")[0], "--udp-agent-port", "--tcp-agent-port")
    args = ap.parse_args()

    wire = WireLog(args.pj_log_level)
    transports = common.start_endpoint(
        wire, args.pj_log_level, args.udp_agent_port, args.tcp_agent_port, args.customer_port
    )
    agent1, agent2, customer = common.create_accounts(Phone, args.server, transports)

    common.check_registered((agent1, agent2))
    check_register_wire(wire, "1001", "UDP", args.udp_agent_port)
    check_register_wire(wire, "1002", "TCP", args.tcp_agent_port)
    # Let any Contact rewrite / re-registration settle before calling.
    pump(0.5)
    checkpoint(args.checkpoints, "registered")

    try:
        if not failures:
            run_call(customer, agent1, "1001", args.server, args.checkpoints)
            check_invite_wire(wire, "1001", "UDP", args.server)
            pump(0.3)
            checkpoint(args.checkpoints, "idle")
            run_call(customer, agent2, "1002", args.server, args.checkpoints)
            check_invite_wire(wire, "1002", "TCP", args.server)
            pump(0.3)
            checkpoint(args.checkpoints, "idle")
    finally:
        common.unregister((agent1, agent2))
        common.ep.hangupAllCalls()
        pump(0.2)
        common.shutdown((agent1, agent2, customer))

    return common.exit_code()


if __name__ == "__main__":
    sys.exit(main())
