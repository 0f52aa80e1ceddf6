#!/usr/bin/env python3
# rss_split.py CMD...: runs CMD (qemu-aarch64 ...), samples /proc/PID/smaps every 50 ms and prints
# the peak of the guest's RSS and of qemu's own (its binary, host libraries, [heap], and the
# TCG code buffer: the anonymous rwx mapping) in MiB.
import re, subprocess, sys, time
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
peak_guest = peak_own = peak_total = 0
while proc.poll() is None:
    try:
        text = open(f"/proc/{proc.pid}/smaps").read()
    except OSError:
        break
    guest = own = 0
    for block in re.split(r"\n(?=[0-9a-f]+-[0-9a-f]+ )", text):
        head = block.split("\n", 1)[0].split()
        m = re.search(r"^Rss:\s+(\d+)", block, re.M)
        if not m: continue
        rss = int(m.group(1))
        perms = head[1]
        path = head[5] if len(head) > 5 else ""
        emulator = (path.startswith("/usr/bin/qemu") or "x86_64-linux-gnu" in path
                    or path in ("[heap]", "[stack]", "[vdso]", "[vvar]") or perms == "rwxp"
                    or "tcg" in path)
        if emulator: own += rss
        else: guest += rss
    peak_guest, peak_own = max(peak_guest, guest), max(peak_own, own)
    peak_total = max(peak_total, guest + own)
    time.sleep(0.05)
print(f"guest_peak_mib {peak_guest/1024:.1f} emulator_peak_mib {peak_own/1024:.1f} "
      f"total_peak_mib {peak_total/1024:.1f}")
