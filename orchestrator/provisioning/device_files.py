"""The files provisioning writes on a device: the agent's environment file, its systemd
unit, and the restart loop used where systemd does not run."""

from __future__ import annotations

from typing import Mapping, Sequence

from orchestrator.provisioning.layout import AgentLayout
from orchestrator.provisioning.request import check_env_value

HEADER = "# Written by `edgebench devices provision`; `edgebench devices upgrade` rewrites it.\n"
RESTART_DELAY_S = 3


def agent_environment(
    layout: AgentLayout, broker_url: str, tags: Sequence[str], extra: Mapping[str, str]
) -> dict[str, str]:
    return {
        "EDGEBENCH_BROKER_URL": broker_url,
        "EDGEBENCH_DEVICE_NAME": layout.name,
        "EDGEBENCH_DEVICE_TAGS": ",".join(tags),
        "EDGEBENCH_HOME": layout.agent_home,
        **extra,
    }


def env_file(environment: Mapping[str, str]) -> str:
    """KEY='value' lines: read the same by systemd's EnvironmentFile= and by sh's `.`."""
    lines = [HEADER]
    for key, value in environment.items():
        check_env_value(key, value)
        lines.append(f"{key}='{value}'\n")
    return "".join(lines)


def systemd_unit(layout: AgentLayout, user: str) -> str:
    # ${VAR} as a word of its own stays one argument, even when empty (systemd.service(5)).
    return f"""{HEADER}[Unit]
Description=edgebench agent {layout.name}
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
User={user}
EnvironmentFile={layout.env_file}
WorkingDirectory={layout.root}
ExecStart={layout.edgebench} agent start --name ${{EDGEBENCH_DEVICE_NAME}} --tags ${{EDGEBENCH_DEVICE_TAGS}}
Restart=always
RestartSec={RESTART_DELAY_S}
# SIGTERM lets the agent finish its trial (Celery's warm shutdown); then the rest is killed.
KillMode=mixed
TimeoutStopSec=60
StandardOutput=append:{layout.log_file}
StandardError=inherit

[Install]
WantedBy=multi-user.target
"""


def supervisor_script(layout: AgentLayout) -> str:
    """A restart loop with a pidfile, for devices without systemd (containers, minimal OSes).

    SIGTERM to the loop is passed to the agent, whose warm shutdown ends its trial first.
    """
    return f"""#!/bin/sh
{HEADER}# Runs the agent and starts it again when it exits; `kill -TERM $(cat agent.pid)` stops both.
dir='{layout.root}'
set -a
. "$dir/agent.env"
set +a
echo $$ > "$dir/agent.pid"
child=
stop() {{
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi
  rm -f "$dir/agent.pid"
  exit 0
}}
trap stop TERM INT HUP
while :; do
  "$dir/venv/bin/edgebench" agent start --name "$EDGEBENCH_DEVICE_NAME" --tags "$EDGEBENCH_DEVICE_TAGS" >>"$dir/agent.log" 2>&1 &
  child=$!
  wait "$child"
  status=$?
  child=
  echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') edgebench supervisor: agent exited with status $status; restarting in {RESTART_DELAY_S} s" >>"$dir/agent.log"
  sleep {RESTART_DELAY_S} &
  wait $!
done
"""
