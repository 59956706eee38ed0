"""syncd's push beside a plain batched SDK script, on each simulator, at several latencies (by hand).

    python benchmarks/push_bench.py                           # 20,000 members, 0 and 50 ms
    python benchmarks/push_bench.py --members 5000 --latency-ms 0 50 200

Each simulator runs in a process of its own, with the given latency on every answer. For each
provider and latency, the same members are pushed twice into fresh lists, alternately:

- the script: what an integrator writes with the official SDK and nothing else, one call at a
  time. Mailchimp: ``batch_list_members`` 500 members a call (``update_existing``). Brevo: the
  contacts exist in the account (created beforehand, not timed) and are put in the list with
  ``add_contact_to_list``, 150 addresses a call;
- syncd: the connector's ``upsert`` (what a sync's writer calls), with the provider's default
  concurrency from the config. It also confirms every member (Brevo: it reads the list back, since
  an import reports refused rows only by address; Mailchimp: from the batch answers).

Prints wall time, API calls and syncd's time over the script's. Targets: at most 1.2x the script at
0 ms, faster than it at 50 ms.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import time
from collections.abc import Callable
from typing import Any

import mailchimp_marketing
import sib_api_v3_sdk as sib

from connectors.brevo import BrevoConnector
from connectors.contract import MemberPush, Target
from connectors.mailchimp import MailchimpConnector
from connectors.simulators.brevo import BrevoSimulator
from connectors.simulators.mailchimp import MailchimpSimulator
from syncd.config.model import BREVO_DEFAULT_CONCURRENCY, MAILCHIMP_DEFAULT_CONCURRENCY

BREVO_KEY, MC_KEY = "bench-key", "bench-key-us1"
BREVO_BATCH, MAILCHIMP_BATCH = 150, 500


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(kind: str, port: int, latency_s: float) -> None:
    sim: Any = BrevoSimulator(api_key=BREVO_KEY) if kind == "brevo" else MailchimpSimulator(api_key=MC_KEY)
    sim.latency_s = latency_s
    sim.run_forever(port)


def start(kind: str, latency_s: float) -> tuple[multiprocessing.Process, int]:
    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=serve, args=(kind, port, latency_s), daemon=True
    )
    proc.start()
    return proc, port


def wait_up(make: Callable[[], Any]) -> Any:
    for _ in range(200):
        try:
            return make()
        except Exception:  # noqa: BLE001 — not up yet
            time.sleep(0.05)
    raise SystemExit("simulator did not start")


def members(n: int) -> list[MemberPush]:
    return [
        MemberPush(f"member{i:06d}@example.com", fields={"first_name": f"First{i}", "last_name": f"Last{i}"})
        for i in range(n)
    ]


def timed(work: Callable[[], int]) -> tuple[float, int]:
    started = time.perf_counter()
    calls = work()
    return time.perf_counter() - started, calls


# --- Brevo --------------------------------------------------------------------------------------


def brevo_script(url: str, list_id: int, emails: list[str]) -> int:
    cfg = sib.Configuration()
    cfg.host, cfg.api_key["api-key"] = url, BREVO_KEY
    api = sib.ContactsApi(sib.ApiClient(cfg))
    calls = 0
    for start_at in range(0, len(emails), BREVO_BATCH):
        api.add_contact_to_list(
            list_id, sib.AddContactToList(emails=emails[start_at : start_at + BREVO_BATCH])
        )
        calls += 1
    return calls


def brevo(n: int, latency_s: float) -> tuple[float, int, float, int]:
    proc, port = start("brevo", latency_s)
    try:
        url = f"http://127.0.0.1:{port}/v3"
        conn = wait_up(
            lambda: BrevoConnector(BREVO_KEY, url, timeout=300, concurrency=BREVO_DEFAULT_CONCURRENCY)
        )
        pushes = members(n)
        # The contacts exist in the account beforehand (the script's add-to-list needs them).
        setup = conn.create_list("setup")
        assert not conn.upsert(setup, pushes).rejected
        script_list, syncd_list = conn.create_list("script"), conn.create_list("syncd")
        emails = [m.email for m in pushes]
        script = timed(lambda: brevo_script(url, int(script_list.list_id), emails))
        fresh = BrevoConnector(BREVO_KEY, url, timeout=300, concurrency=BREVO_DEFAULT_CONCURRENCY)
        ours = timed(lambda: pushed(fresh, syncd_list, pushes, n))
        return (*script, *ours)
    finally:
        proc.terminate()
        proc.join(5)


# --- Mailchimp ----------------------------------------------------------------------------------


def mailchimp_script(url: str, list_id: str, pushes: list[MemberPush]) -> int:
    client = mailchimp_marketing.Client()
    client.set_config({"api_key": MC_KEY})
    client.api_client.host = url
    calls = 0
    for start_at in range(0, len(pushes), MAILCHIMP_BATCH):
        body = {
            "members": [
                {
                    "email_address": m.email,
                    "status_if_new": "subscribed",
                    "status": "subscribed",
                    "merge_fields": {"FNAME": m.fields["first_name"], "LNAME": m.fields["last_name"]},
                }
                for m in pushes[start_at : start_at + MAILCHIMP_BATCH]
            ],
            "update_existing": True,
        }
        answer = client.lists.batch_list_members(list_id, body)
        assert not answer["error_count"], answer["errors"][:3]
        calls += 1
    return calls


def mailchimp(n: int, latency_s: float) -> tuple[float, int, float, int]:
    proc, port = start("mailchimp", latency_s)
    try:
        url = f"http://127.0.0.1:{port}/3.0"
        conn = wait_up(
            lambda: MailchimpConnector(MC_KEY, url, timeout=300, concurrency=MAILCHIMP_DEFAULT_CONCURRENCY)
        )
        pushes = members(n)
        script_list, syncd_list = conn.create_list("script"), conn.create_list("syncd")
        script = timed(lambda: mailchimp_script(url, script_list.list_id, pushes))
        fresh = MailchimpConnector(MC_KEY, url, timeout=300, concurrency=MAILCHIMP_DEFAULT_CONCURRENCY)
        ours = timed(lambda: pushed(fresh, syncd_list, pushes, n))
        return (*script, *ours)
    finally:
        proc.terminate()
        proc.join(5)


def pushed(conn: Any, target: Target, pushes: list[MemberPush], n: int) -> int:
    result = conn.upsert(target, pushes)
    assert len(result.done) == n and not result.rejected, result.rejected[:3]
    return conn.stats.total


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0, 50])
    parser.add_argument(
        "--provider", choices=["brevo", "mailchimp"], nargs="+", default=["brevo", "mailchimp"]
    )
    args = parser.parse_args()
    runs = {"brevo": brevo, "mailchimp": mailchimp}
    for provider in args.provider:
        for latency in args.latency_ms:
            s_time, s_calls, o_time, o_calls = runs[provider](args.members, latency / 1000)
            print(
                f"{provider:9} {args.members} members, latency {latency:>3.0f} ms: script {s_time:6.2f} s "
                f"({s_calls} calls), syncd {o_time:6.2f} s ({o_calls} calls) = {o_time / s_time:.2f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
