#!/usr/bin/env python3
"""bench/qemu.py: QEMU 7.2 on its own, the contender snapd is measured against.

Drives qemu-system-x86_64 (TCG, pc-i440fx-7.2) over QMP with nothing but the
Python standard library, and prints one "key=value" line per measurement:

  qemu.py save MIB ROUNDS DIR
      boots the test guest with MIB MiB of RAM (every usable page filled,
      zero=25, so 75% of the pages hold data), waits for READY, stops the
      guest, lifts max-bandwidth, then ROUNDS times in turn streams the
      guest with  migrate "exec:cat > /dev/null"  (the rate QEMU can produce)
      and  migrate "exec:cat > DIR/qemu.stream"  (QEMU's own save to a file;
      QEMU does not fsync it). Each time is wall clock from the migrate
      command to query-migrate saying "completed" (polled every 2 ms).
      The last stream stays in DIR/qemu.stream for "restore".

  qemu.py restore MIB FILE
      starts QEMU with "-incoming defer", sends migrate-incoming with
      "exec:cat FILE" as soon as QMP answers, polls query-status (every
      millisecond) and resumes the guest with "cont" once it is restored
      (a stopped guest's stream restores it paused): the time from starting
      the process to "running".

Guest arguments come from SNAP_GUEST_ARGS (default as in bench/lib.sh).
"""
import json
import os
import socket
import subprocess
import sys
import time

QEMU = os.environ.get("SNAP_QEMU", "qemu-system-x86_64")
BUILD = os.environ.get("SNAP_BUILD", "build")
GUEST = os.path.realpath(os.path.join(BUILD, "guest", "snapguest.elf"))
ARGS = os.environ.get("SNAP_GUEST_ARGS",
                      "seed=7 zero=25 single=20 dirty=64 verify=0 tick_ms=100")


class Qmp:
    def __init__(self, path, deadline):
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.001)
        self.f = self.s.makefile("rwb", buffering=0)
        self._read()                      # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise RuntimeError("QMP connection closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.f.write(json.dumps(req).encode() + b"\n")
        msg = self._read()
        if "error" in msg:
            raise RuntimeError("%s: %s" % (name, msg["error"]["desc"]))
        return msg["return"]

    def close(self):
        self.s.close()


def launch(mib, work, extra):
    sock = os.path.join(work, "qmp.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    serial = os.path.join(work, "serial.log")
    argv = [QEMU, "-machine", "pc-i440fx-7.2", "-accel", "tcg",
            "-m", "%dM" % mib, "-no-user-config", "-nodefaults",
            "-display", "none", "-monitor", "none", "-parallel", "none",
            "-qmp", "unix:%s,server=on,wait=off" % sock,
            "-serial", "file:" + serial,
            "-kernel", GUEST, "-append", ARGS] + extra
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(work, "qemu.log"), "wb"))
    return p, t0, sock, serial


def stop(p):
    p.kill()
    p.wait()


def wait_ready(serial, p, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError("QEMU exited while the guest was booting")
        try:
            with open(serial, "rb") as f:
                if b"\nREADY " in f.read():
                    return
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the guest did not print READY")


def migrate(q, uri):
    # A completed migration leaves the guest in "postmigrate", from which
    # QEMU refuses another one: let it run for a moment and stop it again.
    if q.cmd("query-status")["status"] == "postmigrate":
        q.cmd("cont")
        q.cmd("stop")
    t0 = time.monotonic()
    q.cmd("migrate", uri=uri)
    while True:
        r = q.cmd("query-migrate")
        st = r.get("status")
        if st == "completed":
            return (time.monotonic() - t0) * 1000.0, r
        if st in ("failed", "cancelled"):
            raise RuntimeError("migration %s: %s" % (st, r.get("error-desc")))
        time.sleep(0.002)


def cmd_save(mib, rounds, work):
    p, _, sock, serial = launch(mib, work, [])
    try:
        q = Qmp(sock, time.monotonic() + 10)
        wait_ready(serial, p, 30 + mib / 100)
        q.cmd("stop")
        q.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
        out = os.path.join(work, "qemu.stream")
        for _ in range(rounds):
            ms, _ = migrate(q, "exec:cat > /dev/null")
            print("null_ms=%.1f" % ms, flush=True)
            if os.path.exists(out):
                os.unlink(out)
            ms, r = migrate(q, "exec:cat > " + out)
            st = os.stat(out)
            print("file_ms=%.1f file_bytes=%d file_alloc=%d qemu_total_ms=%d"
                  % (ms, st.st_size, st.st_blocks * 512,
                     r.get("total-time", 0)), flush=True)
        q.close()
    finally:
        stop(p)


def cmd_restore(mib, path, work):
    p, t0, sock, _ = launch(mib, work, ["-incoming", "defer"])
    try:
        q = Qmp(sock, t0 + 10)
        t_qmp = (time.monotonic() - t0) * 1000.0
        q.cmd("migrate-incoming", uri="exec:cat " + path)
        while True:
            st = q.cmd("query-status")["status"]
            if st == "running":
                break
            # The stream of a stopped guest says so: QEMU restores it
            # paused, and the user resumes it, as virsh restore does.
            if st == "paused":
                q.cmd("cont")
                continue
            if p.poll() is not None:
                raise RuntimeError("QEMU exited during the restore")
            time.sleep(0.001)
        ms = (time.monotonic() - t0) * 1000.0
        print("restore_ms=%.1f qmp_ms=%.1f" % (ms, t_qmp), flush=True)
        q.close()
    finally:
        stop(p)


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "save":
        cmd_save(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif len(sys.argv) == 5 and sys.argv[1] == "restore":
        cmd_restore(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        sys.stderr.write("usage: qemu.py save MIB ROUNDS DIR | "
                         "restore MIB FILE DIR\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
