"""Shared pjsua2 harness of the interop scripts (`basic_call.py`, `transfer.py`).

One Endpoint with no worker thread (events are handled in the calling thread), three
transports on 127.0.0.1 (agent 1001 over UDP, agent 1002 over TCP, the customer over UDP), the
agents registering with digest auth and the customer never registering; PASS/FAIL checks,
bounded waits and the `CHECKPOINT` handshake with the driver on stdin.

A script calls `init()` first (its overall deadline and, optionally, a hook run after every
round of event handling), then `argument_parser()`, `start_endpoint()` and `create_accounts()`.
"""

import argparse
import re
import select
import sys
import time

import pjsua2 as pj

DOMAIN = "interop.local"
AGENTS = {"1001": "pass1001", "1002": "pass1002"}

WAIT_S = 8.0  # bound of any single wait
CHECKPOINT_WAIT_S = 20.0
DEADLINE_S = None  # hard bound of all waits together: set by init()

failures = []
started = time.monotonic()
ep = None
_service = None  # run after each round of event handling: set by init()


def init(deadline_s, service=None):
    """`deadline_s` bounds all waits together; `service()` runs after each libHandleEvents."""
    global DEADLINE_S, _service
    DEADLINE_S = deadline_s
    _service = service


def _handle_events():
    ep.libHandleEvents(10)
    if _service is not None:
        _service()


def log(msg):
    print(f"[{time.monotonic() - started:6.2f}s] {msg}", flush=True)


def check(name, ok, detail=""):
    status = "PASS" if ok else "FAIL"
    log(f"{status}: {name}" + (f" ({detail})" if detail else ""))
    if not ok:
        failures.append(name)
    return ok


def pump(seconds):
    """Handles SIP/media events for `seconds` (pjsua2 runs with no worker thread)."""
    end = time.monotonic() + seconds
    while True:
        _handle_events()
        if time.monotonic() >= end:
            return


def wait_for(cond, timeout=WAIT_S):
    """Handles events until cond() is true or timeout; returns cond()."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if time.monotonic() - started > DEADLINE_S:
            break
        if cond():
            return True
        _handle_events()
    return bool(cond())


def checkpoint(enabled, name):
    if not enabled:
        return
    print(f"CHECKPOINT {name}", flush=True)
    end = time.monotonic() + CHECKPOINT_WAIT_S
    while time.monotonic() < end:
        _handle_events()
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if ready:
            sys.stdin.readline()
            return
    check(f"driver answered checkpoint {name}", False, "no line on stdin")


class WireLog(pj.LogWriter):
    """Keeps pjsua2's log of every SIP message sent and received (log level 4), and echoes
    entries up to `echo_level` to stdout."""

    HEAD = re.compile(r"(RX|TX) \d+ bytes .*? (?:from|to) (UDP|TCP) ([0-9.]+:\d+):\s*\n")

    def __init__(self, echo_level):
        pj.LogWriter.__init__(self)
        self.echo_level = echo_level
        self.messages = []  # (direction, transport, peer, message text)

    def write(self, entry):
        if entry.level <= self.echo_level:
            sys.stdout.write(entry.msg if entry.msg.endswith("\n") else entry.msg + "\n")
        m = self.HEAD.search(entry.msg)
        if m:
            text = entry.msg[m.end():].split("\n--end msg--")[0]
            self.messages.append((m.group(1), m.group(2), m.group(3), text))


class BasePhone(pj.Account):
    """An account that records its registration results and the calls it receives."""

    def __init__(self, name):
        pj.Account.__init__(self)
        self.name = name
        self.reg_codes = []
        self.reg_expires = None
        self.incoming = []

    def onRegState(self, prm):
        self.reg_codes.append(prm.code)
        self.reg_expires = prm.expiration
        log(f"{self.name}: registration {prm.code} {prm.reason} expires={prm.expiration}")


class BaseCall(pj.Call):
    """A call that clocks its audio through the null sound device and records the offers it
    receives in re-INVITEs (in `self.rx_offers`, set by the subclass), with media helpers."""

    def onCallMediaState(self, prm):
        info = self.getInfo()
        for i, m in enumerate(info.media):
            if m.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            log(f"{self.name}: media {i} status={m.status} dir={m.dir}")
            if m.status in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_REMOTE_HOLD):
                # Clock the stream through the (null) sound device so RTP is sent and received.
                aud = self.getAudioMedia(i)
                adm = ep.audDevManager()
                adm.getCaptureDevMedia().startTransmit(aud)
                aud.startTransmit(adm.getPlaybackDevMedia())

    def onCallRxOffer(self, prm):
        # Called for offers in re-INVITEs (not for the initial INVITE).
        self.rx_offers.append(prm.offer.wholeSdp)

    # --- helpers -------------------------------------------------------------------------

    def state(self):
        return self.states[-1] if self.states else None

    def audio(self):
        """(status, dir) of the first audio media, or (None, None)."""
        try:
            info = self.getInfo()  # keep it alive: info.media refers into it
            for m in info.media:
                if m.type == pj.PJMEDIA_TYPE_AUDIO:
                    return m.status, m.dir
        except pj.Error:
            pass
        return None, None

    def audio_index(self):
        info = self.getInfo()
        for m in info.media:
            if m.type == pj.PJMEDIA_TYPE_AUDIO:
                return m.index
        return None

    def rx_packets(self):
        try:
            idx = self.audio_index()
            if idx is None:
                return 0
            return self.getStreamStat(idx).rtcp.rxStat.pkt
        except pj.Error:
            return 0


def sdp_direction(sdp):
    """The effective direction of the first audio m-line (media attribute, else session, else
    sendrecv)."""
    session_dir, media_dir, in_audio = None, None, False
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            if in_audio:
                break
            in_audio = line.startswith("m=audio")
            continue
        if line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            if in_audio:
                media_dir = line[2:]
            elif media_dir is None and not in_audio:
                session_dir = line[2:]
    return media_dir or session_dir or "sendrecv"


def argument_parser(description, agent1_port_flag, agent2_port_flag):
    """The options both scripts take; the agents' port options are named per script."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--server", required=True, help="handover SIP address, HOST:PORT")
    ap.add_argument(agent1_port_flag, type=int, required=True, help="agent 1001's UDP port")
    ap.add_argument(agent2_port_flag, type=int, required=True, help="agent 1002's TCP port")
    ap.add_argument("--customer-port", type=int, required=True, help="customer's UDP port")
    ap.add_argument("--checkpoints", action="store_true", help="pause at CHECKPOINT lines")
    ap.add_argument("--pj-log-level", type=int, default=0, help="pjsua2 console log level")
    return ap


def start_endpoint(wire, pj_log_level, agent1_port, agent2_port, customer_port):
    """Creates and starts the Endpoint (logging to `wire`) with the three transports; returns
    the transport ids by phone name."""
    global ep
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0  # events are handled in this thread by libHandleEvents
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = "handover-interop pjsua2"
    cfg.logConfig.writer = wire
    cfg.logConfig.level = max(4, pj_log_level)  # 4: SIP messages reach WireLog
    cfg.logConfig.consoleLevel = max(4, pj_log_level)
    cfg.logConfig.decor = cfg.logConfig.decor & ~pj.PJ_LOG_HAS_NEWLINE
    cfg.medConfig.sndAutoCloseTime = -1  # keep the null device open, or media stops after 1 s
    cfg.medConfig.noVad = True  # continuous RTP, so packet counts prove media flows
    ep.libInit(cfg)

    transports = {}
    for name, kind, port in (
        ("agent1001", pj.PJSIP_TRANSPORT_UDP, agent1_port),
        ("agent1002", pj.PJSIP_TRANSPORT_TCP, agent2_port),
        ("customer", pj.PJSIP_TRANSPORT_UDP, customer_port),
    ):
        tcfg = pj.TransportConfig()
        tcfg.port = port
        tcfg.boundAddress = "127.0.0.1"
        transports[name] = ep.transportCreate(kind, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    return transports


def make_account(phone_class, name, id_uri, transport_id, registrar=None, user=None,
                 password=None):
    cfg = pj.AccountConfig()
    cfg.idUri = id_uri
    cfg.sipConfig.transportId = transport_id
    if registrar:
        cfg.regConfig.registrarUri = registrar
        cfg.regConfig.timeoutSec = 300
        cfg.regConfig.retryIntervalSec = 0  # no silent retries: a failure must show
        cred = pj.AuthCredInfo("digest", DOMAIN, user, 0, password)
        cfg.sipConfig.authCreds.append(cred)
    else:
        cfg.regConfig.registrarUri = ""
        cfg.regConfig.registerOnAdd = False
    cfg.mediaConfig.transportConfig.port = 0  # RTP on any free port
    acc = phone_class(name)
    acc.create(cfg)
    return acc


def create_accounts(phone_class, server, transports):
    """Agent 1001 (registering over UDP), agent 1002 (over TCP) and the customer (never
    registering), as `phone_class` accounts."""
    host = server.rsplit(":", 1)[0]
    agent1, agent2 = (
        make_account(
            phone_class,
            f"agent{agent_id}",
            f"sip:{agent_id}@{DOMAIN}",
            transports[f"agent{agent_id}"],
            registrar=registrar,
            user=agent_id,
            password=AGENTS[agent_id],
        )
        for agent_id, registrar in (
            ("1001", f"sip:{server}"),
            ("1002", f"sip:{server};transport=tcp"),
        )
    )
    customer = make_account(phone_class, "customer", f"sip:customer@{host}", transports["customer"])
    return agent1, agent2, customer


def check_registered(agents):
    for acc in agents:
        ok = wait_for(lambda: acc.reg_codes and acc.reg_codes[-1] // 100 != 1)
        check(
            f"{acc.name} REGISTER with digest auth succeeds",
            ok and acc.reg_codes[-1] == 200 and acc.getInfo().regIsActive,
            f"codes {acc.reg_codes}",
        )


def unregister(agents):
    for acc in agents:
        if not (acc.reg_codes and acc.reg_codes[-1] == 200 and acc.reg_expires):
            continue  # never registered: nothing to undo (already reported)
        codes_before = len(acc.reg_codes)
        try:
            acc.setRegistration(False)
        except pj.Error as e:
            check(f"{acc.name} unregister sent", False, e.info())
            continue
        check(
            f"{acc.name} unregister (Expires 0) answered 200",
            wait_for(lambda: len(acc.reg_codes) > codes_before, 5)
            and acc.reg_codes[-1] == 200,
            f"codes {acc.reg_codes[codes_before:]}",
        )


def shutdown(accounts):
    for acc in accounts:
        acc.shutdown()
    ep.libDestroy()


def exit_code():
    """Logs the verdict; 1 on any failed check, else 0."""
    if failures:
        log(f"FAILED {len(failures)} check(s): " + "; ".join(failures))
        return 1
    log("ALL CHECKS PASSED")
    return 0
