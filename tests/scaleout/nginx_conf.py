#!/usr/bin/env python3
"""Renders deploy/nginx/tinybert.conf for a run of nginx on loopback (tests/scaleout, bench/load).

usage: nginx_conf.py TEMPLATE OUT_DIR LISTEN_PORT REPLICA_ADDR... > /dev/null
Writes OUT_DIR/tinybert.conf (the template with its replica lines, `listen` line and
/var/log/nginx/ prefix replaced, nothing else) and OUT_DIR/nginx.conf (the main file: daemon
off, pid, error log and temp paths in OUT_DIR, `include tinybert.conf` inside http {}), to run
as `nginx -e OUT_DIR/error.log -p OUT_DIR -c OUT_DIR/nginx.conf`.
"""
import os
import re
import sys

BEGIN = "# BEGIN replicas"
END = "# END replicas"


def render_site(template_text, listen_port, replicas, log_dir):
    """The template with the replica lines, the listen line and the log prefix replaced."""
    lines = template_text.splitlines(keepends=True)
    begin = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    end = [i for i, line in enumerate(lines) if line.strip().startswith(END)]
    if len(begin) != 1 or len(end) != 1 or end[0] <= begin[0]:
        raise ValueError(f"the template needs one '{BEGIN}' line and one '{END}' line after it")
    block = lines[begin[0] + 1:end[0]]
    first = next((line for line in block if line.strip().startswith("server ")), None)
    if first is None:
        raise ValueError("no 'server ADDR ...;' line between the replica markers")
    m = re.match(r"^(\s*)server\s+(\S+)(.*;\s*)$", first)
    if not m:
        raise ValueError(f"cannot read the replica line: {first.strip()}")
    indent, _, params = m.groups()
    params = params.rstrip() + "\n"
    new_block = [f"{indent}server {addr}{params}" for addr in replicas]
    out = lines[:begin[0] + 1] + new_block + lines[end[0]:]
    text = "".join(out)
    text, n = re.subn(r"(?m)^(\s*)listen\s+[^;]+;", rf"\g<1>listen 127.0.0.1:{listen_port};", text)
    if n != 1:
        raise ValueError(f"expected one 'listen' line in the template, found {n}")
    return text.replace("/var/log/nginx/", log_dir.rstrip("/") + "/")


def render(template_path, out_dir, listen_port, replicas, worker_processes=2):
    """Writes out_dir/tinybert.conf and out_dir/nginx.conf; returns the main file's path."""
    with open(template_path, encoding="utf-8") as f:
        site = render_site(f.read(), listen_port, replicas, out_dir)
    site_path = os.path.join(out_dir, "tinybert.conf")
    with open(site_path, "w", encoding="utf-8") as f:
        f.write(f"# rendered by tests/scaleout/nginx_conf.py from {template_path}\n" + site)
    temp = {name: os.path.join(out_dir, name) for name in
            ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        os.makedirs(path, exist_ok=True)
    # As root the workers would run as `nobody`, who cannot enter this 0700 temporary directory
    # (temp files, logs): keep them root. As any other user nginx ignores `user` (with a warning),
    # so it is written only when needed.
    user = "user root;\n" if os.geteuid() == 0 else ""
    main = f"""# rendered by tests/scaleout/nginx_conf.py: loopback test instance
daemon off;
{user}worker_processes {worker_processes};
pid {out_dir}/nginx.pid;
error_log {out_dir}/error.log notice;
events {{
    worker_connections 4096;
}}
http {{
    client_body_temp_path {temp['client_body']};
    proxy_temp_path {temp['proxy']};
    fastcgi_temp_path {temp['fastcgi']};
    uwsgi_temp_path {temp['uwsgi']};
    scgi_temp_path {temp['scgi']};
    access_log off;
    include {site_path};
}}
"""
    main_path = os.path.join(out_dir, "nginx.conf")
    with open(main_path, "w", encoding="utf-8") as f:
        f.write(main)
    return main_path


def main():
    if len(sys.argv) < 5:
        sys.exit(__doc__)
    template, out_dir, port = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
    print(render(template, out_dir, port, sys.argv[4:]))


if __name__ == "__main__":
    main()
