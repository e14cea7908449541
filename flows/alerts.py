"""Alerts: Prefect automations that POST to one webhook, declared here and nowhere else.

`python -m flows.alerts` applies them to the Prefect API of the environment (PREFECT_API_URL);
`make serve` (infra/serve.sh) and the team setup (infra/team/team.sh up) run it. The webhook's
URL comes from DENOISE_ALERT_WEBHOOK_URL; without it nothing is applied. Applying again
replaces the automations of the same names, so this file stays their one definition.

They fire on
- a run of the denoise-pipeline flow that fails or crashes;
- a flow run of the pipeline that is late (not started at its scheduled time) and still has not
  started alerts.late_after_seconds (params.yaml) after Prefect marked it late;
- the event denoise.champion.moved, which the flow emits when the register stage moves the
  champion alias (flows/pipeline.py).
Each POSTs a JSON object: {"alert": ..., "automation": ..., then what the alert is about}.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from uuid import UUID

import httpx
from prefect.automations import Automation
from prefect.blocks.webhook import Webhook
from prefect.events.actions import CallWebhook
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.exceptions import PrefectHTTPStatusError

from denoise.core.config import load_params
from denoise.core.errors import DenoiseError
from flows.pipeline import CHAMPION_EVENT
from flows.pipeline import FLOW_NAME as FLOW

WEBHOOK_ENV = "DENOISE_ALERT_WEBHOOK_URL"
BLOCK = "denoise-alerts"
FAILED, LATE, CHAMPION = "denoise: flow run failed", "denoise: flow run late", "denoise: champion"

_FLOW_RUNS = {"prefect.resource.id": "prefect.flow-run.*"}
_OF_THE_FLOW = {"prefect.resource.role": "flow", "prefect.resource.name": FLOW}
# Every state a flow run reaches once it has started (or been settled by hand).
_STARTED = {
    f"prefect.flow-run.{state}"
    for state in ("Pending", "Running", "Completed", "Failed", "Crashed", "Cancelling", "Cancelled")
}


def _payload(alert: str, fields: dict[str, str]) -> str:
    """A Jinja template of a flat JSON object (the values Prefect fills in hold no quotes)."""
    body = {"alert": alert, "automation": "{{ automation.name }}", **fields}
    return "{" + ", ".join(f'"{key}": "{value}"' for key, value in body.items()) + "}"


def _flow_run_fields() -> dict[str, str]:
    return {
        "flow_run": "{{ event.resource.name }}",
        "flow_run_id": "{{ event.resource.id }}",
        "event": "{{ event.event }}",
        "occurred": "{{ event.occurred }}",
    }


def automations(late_after_seconds: float, block_id: UUID) -> list[Automation]:
    """The declared automations, each calling the webhook block block_id."""

    def call(alert: str, fields: dict[str, str]) -> list[CallWebhook]:
        return [CallWebhook(block_document_id=block_id, payload=_payload(alert, fields))]

    return [
        Automation(
            name=FAILED,
            description=f"A run of {FLOW} failed or crashed.",
            trigger=EventTrigger(
                match=_FLOW_RUNS,
                match_related=_OF_THE_FLOW,
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=call("failed", _flow_run_fields()),
        ),
        Automation(
            name=LATE,
            description=f"A run of {FLOW} is late and has not started {late_after_seconds:g} s "
            "later (alerts.late_after_seconds).",
            trigger=EventTrigger(
                match=_FLOW_RUNS,
                match_related=_OF_THE_FLOW,
                after={"prefect.flow-run.Late"},
                expect=_STARTED,
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=late_after_seconds),
            ),
            actions=call("late", _flow_run_fields()),
        ),
        Automation(
            name=CHAMPION,
            description="The register stage moved the champion alias.",
            trigger=EventTrigger(
                expect={CHAMPION_EVENT},
                posture=Posture.Reactive,
                threshold=1,
                within=timedelta(0),
            ),
            actions=call(
                "champion moved",
                {
                    "registered_model": "{{ event.resource.name }}",
                    "version": "{{ event.payload.version }}",
                    "model": "{{ event.payload.model }}",
                    "score": "{{ event.payload.score }}",
                    "previous_version": "{{ event.payload.previous_version or '' }}",
                    "reason": "{{ event.payload.reason }}",
                },
            ),
        ),
    ]


def apply(url: str, late_after_seconds: float) -> list[str]:
    """Save the webhook block and replace the automations; return their names."""
    # The URL is the operator's own (the environment): a private address is allowed, which
    # also lets a receiver on loopback take the alerts.
    block = Webhook(url=url, headers={"Content-Type": "application/json"}, allow_private_urls=True)
    block_id = block.save(BLOCK, overwrite=True)
    applied = []
    for automation in automations(late_after_seconds, block_id):
        while True:  # names are not unique in Prefect: remove every earlier one
            try:
                Automation.read(name=automation.name).delete()
            except ValueError:  # none (left)
                break
        applied.append(automation.create().name)
    return applied


def main() -> None:
    parser = argparse.ArgumentParser(description="Apply the denoise alerts to the Prefect API.")
    parser.add_argument("--params", default="params.yaml", help="params.yaml (alerts section)")
    arguments = parser.parse_args()
    url = os.environ.get(WEBHOOK_ENV, "").strip()
    if not url:
        print(f"alerts: {WEBHOOK_ENV} is not set; no alerts applied", file=sys.stderr)
        return
    try:
        params = load_params(Path(arguments.params))
        applied = apply(url, params.alerts.late_after_seconds)
    except (DenoiseError, PrefectHTTPStatusError, httpx.HTTPError) as error:
        sys.exit(f"error: alerts not applied: {error}".splitlines()[0])
    for name in applied:
        print(f"alerts: applied {name!r}")


if __name__ == "__main__":
    main()
