"""A short scenario against a live Tandem gateway, through the generated Python client.

usage: python sdk/scenario.py --url URL --token TOKEN [--client OUT_DIR/python]

Run it with the generator's venv ($TANDEM_SDK_VENV/bin/python), which has the client's
dependencies (httpx, attrs). The token must be a participant admin's (e.g.
`tandem token --user participant_admin`): the scenario uploads a package and allocates parties.

Steps: readyz; upload the Iou package (plain HTTP: the generated client leaves YAML bodies
out); allocate two fresh parties, granting the token's user CanActAs on them; create an Iou
with submit-and-wait; read the ledger end; find the Iou in the active contracts and through
`/v2/query`; transfer it to the second party with submit-and-wait-for-transaction and check
that the new owner sees it and the old contract is gone; exercise the archived contract (a
problem document); call with a bad token (401, problem+json). Every step is printed; the first
failure is printed as `FAIL: ...` and exits 1. Every HTTP call has a timeout and the whole run
a deadline; a 502/503 answer (the lb has no ready gateway, or the ledger is unavailable) is
retried until the deadline draws near. Known gaps are printed as `WARN:` and do not fail the
run unless --strict is given.
"""

from __future__ import annotations

import argparse
import decimal
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, NoReturn

STARTED = time.monotonic()  # the deadline counts from here, imports included
HERE = Path(__file__).resolve().parent
IOU = "#iou:Iou:Iou"


class Failure(Exception):
    pass


class Unavailable(Exception):
    """A 502/503 answer: no instance behind the lb (an empty body), or the ledger unavailable."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status} {body!r}")


def raise_unavailable(response: Any) -> None:
    """An httpx response hook: turns 502/503 into Unavailable, which the scenario retries.

    The lb answers 503 with an empty body when no gateway is ready, which the generated
    client (expecting a problem document) cannot parse."""
    if response.status_code in (502, 503):
        response.read()
        raise Unavailable(response.status_code, response.text[:200])


def fail(message: str) -> NoReturn:
    raise Failure(message)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:4600")
    p.add_argument("--token", required=True, help="a participant admin's JWT")
    p.add_argument(
        "--client",
        help="directory holding the generated tandem_client package "
        "(OUT_DIR/python of sdk/generate); else it must be importable",
    )
    p.add_argument(
        "--package",
        default=str(HERE.parent / "examples/packages/iou.yaml"),
        help="the Iou package document (default: examples/packages/iou.yaml)",
    )
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP call (10)")
    p.add_argument("--deadline", type=float, default=50.0, help="seconds for the whole run (50)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on known gaps otherwise printed as WARN: (an active-contracts "
        "TemplateFilter by package name, `#iou:Iou:Iou`, matching nothing)",
    )
    return p.parse_args()


def main() -> int:
    args = parse_args()
    if args.client:
        sys.path.insert(0, os.path.abspath(args.client))
    try:
        scenario = Scenario(args)
        scenario.run()
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except ImportError as e:
        print(
            f"FAIL: cannot import the generated client ({e}); pass --client OUT_DIR/python",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # a transport error, a timeout, a response the client cannot parse
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if scenario.warnings:
        print(f"scenario passed with {len(scenario.warnings)} warning(s):")
        for w in scenario.warnings:
            print(f"  WARN: {w}")
        return 0
    print("scenario passed")
    return 0


class Scenario:
    def __init__(self, args: argparse.Namespace) -> None:
        import httpx
        from tandem_client import Client

        self.args = args
        self.url = args.url.rstrip("/")
        self.started = STARTED
        self.httpx = httpx
        self.timeout = httpx.Timeout(args.timeout)
        self.hooks = {"event_hooks": {"response": [raise_unavailable]}}
        self.client = self.authenticated(args.token)
        self.anonymous = Client(base_url=self.url, timeout=self.timeout, httpx_args=self.hooks)
        self.http = httpx.Client(base_url=self.url, timeout=self.timeout, **self.hooks)
        self.step_no = 0
        self.warnings: list[str] = []

    # --- helpers ------------------------------------------------------------------------

    def step(self, title: str) -> None:
        self.step_no += 1
        elapsed = time.monotonic() - self.started
        if elapsed > self.args.deadline:
            fail(f"deadline of {self.args.deadline:.0f} s passed before step {title!r}")
        print(f"[{self.step_no:2}] {elapsed:5.1f}s {title}", flush=True)

    def warn(self, message: str) -> None:
        if self.args.strict:
            fail(message)
        self.warnings.append(message)
        print(f"     WARN: {message}", flush=True)

    def remaining(self) -> float:
        return self.args.deadline - (time.monotonic() - self.started)

    def authenticated(self, token: str) -> Any:
        from tandem_client import AuthenticatedClient

        return AuthenticatedClient(
            base_url=self.url, token=token, timeout=self.timeout, httpx_args=self.hooks
        )

    def call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """fn(**kwargs), retried while the gateway is unavailable (502/503, connection refused).
        Such a request did not reach the ledger, or the ledger refused it as unavailable; the
        commands carry a command id, so a retry of one that did get through is deduplicated."""
        retries, since = 0, time.monotonic()
        while True:
            try:
                response = fn(**kwargs)
            except (Unavailable, self.httpx.ConnectError) as e:
                if self.remaining() < self.args.timeout + 2:
                    fail(f"{what}: still unavailable near the deadline ({retries} retries): {e}")
                if retries == 0:
                    print(f"     {what}: unavailable ({e}), retrying", flush=True)
                retries += 1
                time.sleep(0.5)
                continue
            if retries:
                took = time.monotonic() - since
                print(f"     {what}: answered after {retries} retries in {took:.1f} s", flush=True)
            return response

    @staticmethod
    def ok(response: Any, what: str) -> Any:
        """The parsed body of a 200 answer, or a failure naming the status and problem."""
        if response.status_code != 200:
            body = response.content.decode(errors="replace")[:500]
            fail(f"{what}: HTTP {int(response.status_code)}: {body}")
        if response.parsed is None:
            fail(f"{what}: HTTP 200 without a body the client could parse")
        return response.parsed

    # --- the scenario -------------------------------------------------------------------

    def run(self) -> None:
        from tandem_client.api.commands import submit_and_wait, submit_and_wait_for_transaction
        from tandem_client.api.query import query
        from tandem_client.api.state import get_ledger_end, list_active_contracts
        from tandem_client.api.system import readyz
        from tandem_client.api.users import get_authenticated_user
        from tandem_client.models import (
            AllocatePartyRequest,
            CreateCommand,
            ExerciseCommand,
            GetActiveContractsRequest,
            JsCommands,
            JsCommandType0,
            JsCommandType1,
            JsContractEntryType0,
            JsCumulativeFilter,
            JsEventType0,
            JsEventType2,
            JsFilters,
            JsIdentifierFilterType1,
            JsTransactionFilter,
            JsTransactionFilterFiltersByParty,
            Problem,
            QueryRequest,
            QueryRequestFilterType0,
            TemplateFilter,
            TemplateFilterValue,
        )

        self.step("readyz")
        r = self.call("readyz", readyz.sync_detailed, client=self.anonymous)
        self.ok(r, "readyz")
        checks = r.parsed.checks.to_dict() if r.parsed.checks else {}
        print(f"     status={r.parsed.status} checks={checks}")

        self.step("authenticated user")
        user = self.ok(
            self.call(
                "authenticated-user", get_authenticated_user.sync_detailed, client=self.client
            ),
            "authenticated-user",
        ).user
        print(f"     user={user.id}")

        self.step(f"upload package {self.args.package} (plain HTTP, application/yaml)")
        document = Path(self.args.package).read_text(encoding="utf-8")
        r = self.call(
            "upload package",
            self.http.post,
            url="/v2/packages",
            content=document.encode(),
            headers={
                "Authorization": f"Bearer {self.args.token}",
                "Content-Type": "application/yaml",
            },
        )
        if r.status_code == 200:
            package = r.json()["package"]
            print(f"     packageId={package['packageId']} {package['name']} {package['version']}")
        elif r.status_code == 409:
            print(f"     already uploaded: {r.json().get('code')}")
        else:
            fail(f"upload package: HTTP {r.status_code}: {r.text[:500]}")

        suffix = uuid.uuid4().hex[:8]
        alice = self.allocate(f"sdk-alice-{suffix}", user.id, AllocatePartyRequest)
        bob = self.allocate(f"sdk-bob-{suffix}", user.id, AllocatePartyRequest)

        self.step(f"submit-and-wait: create {IOU} issuer=owner=alice, 100.25 USD")
        payload = {
            "issuer": alice,
            "owner": alice,
            "currency": "USD",
            "amount": "100.25",
            "viewers": [],
        }
        commands = JsCommands(
            act_as=[alice],
            command_id=f"sdk-create-{suffix}",
            commands=[
                JsCommandType0(
                    create_command=CreateCommand(template_id=IOU, create_arguments=payload)
                )
            ],
        )
        created = self.ok(
            self.call(
                "submit-and-wait", submit_and_wait.sync_detailed, client=self.client, body=commands
            ),
            "submit-and-wait create",
        )
        print(f"     updateId={created.update_id} completionOffset={created.completion_offset}")

        self.step("ledger end")
        end = self.ok(
            self.call("ledger-end", get_ledger_end.sync_detailed, client=self.client), "ledger-end"
        ).offset
        print(f"     offset={end}")
        if end < created.completion_offset:
            fail(f"ledger end {end} is before the completion offset {created.completion_offset}")

        def acs_filter(party: str, template_id: str | None) -> JsTransactionFilter:
            by_party = JsTransactionFilterFiltersByParty()
            by_party[party] = JsFilters(
                cumulative=[]
                if template_id is None
                else [
                    JsCumulativeFilter(
                        identifier_filter=JsIdentifierFilterType1(
                            template_filter=TemplateFilterValue(
                                value=TemplateFilter(template_id=template_id)
                            )
                        )
                    )
                ]
            )
            return JsTransactionFilter(filters_by_party=by_party)

        def active_contracts(party: str, template_id: str | None) -> list[Any]:
            acs = self.ok(
                self.call(
                    "active-contracts",
                    list_active_contracts.sync_detailed,
                    client=self.client,
                    body=GetActiveContractsRequest(filter_=acs_filter(party, template_id)),
                ),
                "active-contracts",
            )
            events = []
            for item in acs:
                if not isinstance(item.contract_entry, JsContractEntryType0):
                    fail(f"active-contracts: unexpected entry {item.contract_entry!r}")
                events.append(item.contract_entry.js_active_contract.created_event)
            return events

        self.step("active contracts of alice (all templates)")
        events = active_contracts(alice, None)
        if len(events) != 1:
            fail(f"active-contracts: expected alice's one Iou, got {len(events)}: {events!r}")
        iou = events[0]
        check_payload("active-contracts", iou.create_argument, payload)
        if not iou.template_id.endswith(":Iou:Iou") or alice not in iou.signatories:
            fail(f"active-contracts: templateId={iou.template_id} signatories={iou.signatories}")
        if iou.offset != created.completion_offset:
            fail(
                f"active-contracts: created at offset {iou.offset}, "
                f"submit-and-wait said {created.completion_offset}"
            )
        print(f"     contractId={iou.contract_id} templateId={iou.template_id}")

        for template_id in (iou.template_id, IOU):
            self.step(f"active contracts of alice (template filter {template_id})")
            ids = [e.contract_id for e in active_contracts(alice, template_id)]
            if ids != [iou.contract_id]:
                message = (
                    f"active-contracts with TemplateFilter {template_id}: expected "
                    f"[{iou.contract_id}], got {ids}"
                )
                if template_id == IOU:  # see --strict
                    self.warn(message + " (a package-name template id in a filter)")
                    continue
                fail(message)
            print(f"     found {iou.contract_id}")

        def run_query(party: str, filter_: dict[str, Any], offset: int) -> list[Any]:
            f = QueryRequestFilterType0()
            f.additional_properties = filter_
            page = self.ok(
                self.call(
                    "query",
                    query.sync_detailed,
                    client=self.client,
                    body=QueryRequest(
                        parties=[party], template_ids=[IOU], filter_=f, offset=offset
                    ),
                ),
                "query",
            )
            if page.offset < offset:
                fail(f"query: read at offset {page.offset}, asked for at least {offset}")
            return page.contracts

        self.step("/v2/query alice: currency=USD, amount >= 100")
        found = run_query(
            alice, {"currency": "USD", "amount": {"%gte": "100"}}, created.completion_offset
        )
        if [c.contract_id for c in found] != [iou.contract_id]:
            fail(f"query: expected [{iou.contract_id}], got {[c.contract_id for c in found]}")
        check_payload("query", found[0].create_argument, payload)
        print(f"     found {iou.contract_id}")
        if run_query(alice, {"amount": {"%gt": "100.25"}}, created.completion_offset):
            fail("query: amount > 100.25 matched the 100.25 Iou")

        self.step("submit-and-wait-for-transaction: exercise Transfer to bob")
        transfer = JsCommands(
            act_as=[alice],
            commands=[
                JsCommandType1(
                    exercise_command=ExerciseCommand(
                        template_id=IOU,
                        contract_id=iou.contract_id,
                        choice="Transfer",
                        choice_argument={"new_owner": bob},
                    )
                )
            ],
        )
        tx = self.ok(
            self.call(
                "submit-and-wait-for-transaction",
                submit_and_wait_for_transaction.sync_detailed,
                client=self.client,
                body=transfer,
                idempotency_key=f"sdk-transfer-{suffix}",
            ),
            "submit-and-wait-for-transaction Transfer",
        ).transaction
        exercised = [e.exercised_event for e in tx.events if isinstance(e, JsEventType2)]
        new = [e.created_event for e in tx.events if isinstance(e, JsEventType0)]
        if len(exercised) != 1 or exercised[0].choice != "Transfer" or not exercised[0].consuming:
            fail(f"transfer: expected one consuming Transfer, got {tx.events!r}")
        if len(new) != 1:
            fail(f"transfer: expected one created Iou, got {len(new)}")
        moved = dict(payload, owner=bob)
        check_payload("transfer", new[0].create_argument, moved)
        print(
            f"     updateId={tx.update_id} offset={tx.offset} new contractId={new[0].contract_id}"
        )

        self.step("/v2/query bob: the new owner sees the Iou")
        found = run_query(bob, {"owner": bob}, tx.offset)
        if [c.contract_id for c in found] != [new[0].contract_id]:
            fail(
                f"query bob: expected [{new[0].contract_id}], got {[c.contract_id for c in found]}"
            )
        check_payload("query bob", found[0].create_argument, moved)
        if bob not in found[0].witness_parties:
            fail(f"query bob: witnessParties {found[0].witness_parties} lack bob")
        print(f"     found {new[0].contract_id}")

        self.step("/v2/query alice: the old contract is archived")
        ids = [c.contract_id for c in run_query(alice, {}, tx.offset)]
        if iou.contract_id in ids or new[0].contract_id not in ids:
            fail(
                f"query alice: expected only {new[0].contract_id} (alice is the issuer), got {ids}"
            )

        self.step("error: exercise the archived contract again")
        r = self.call(
            "submit-and-wait", submit_and_wait.sync_detailed, client=self.client, body=transfer
        )
        if r.status_code in (200, 500) or not isinstance(r.parsed, Problem):
            fail(
                f"exercise archived: expected a 4xx problem, got HTTP {int(r.status_code)}: "
                f"{r.content[:300]!r}"
            )
        print(f"     HTTP {int(r.status_code)} code={r.parsed.code}: {r.parsed.detail}")

        self.step("error: a bad token gets 401 problem+json")
        header, claims, signature = (self.args.token.split(".") + ["", "", ""])[:3]
        forged = f"{header}.{claims}.{'A' * max(len(signature), 8)}"
        for name, token in (("forged signature", forged), ("not a JWT", "not-a-jwt")):
            r = self.call(name, get_ledger_end.sync_detailed, client=self.authenticated(token))
            content_type = r.headers.get("content-type", "")
            if r.status_code != 401:
                fail(f"{name}: expected HTTP 401, got {int(r.status_code)}: {r.content[:300]!r}")
            if not content_type.startswith("application/problem+json"):
                fail(f"{name}: expected application/problem+json, got {content_type!r}")
            if (
                not isinstance(r.parsed, Problem)
                or r.parsed.status != 401
                or r.parsed.code != "UNAUTHENTICATED"
            ):
                fail(f"{name}: unexpected problem {r.content[:300]!r}")
            print(f"     {name}: 401 code={r.parsed.code} reason={r.parsed.reason}")

    def allocate(self, hint: str, user_id: str, request: type) -> str:
        from tandem_client.api.parties import allocate_party

        self.step(f"allocate party {hint} (CanActAs for {user_id})")
        r = self.call(
            "allocate party",
            allocate_party.sync_detailed,
            client=self.client,
            body=request(party_id_hint=hint, user_id=user_id),
        )
        party = self.ok(r, "allocate party").party_details.party
        print(f"     party={party}")
        return party


def check_payload(what: str, actual: Any, expected: dict[str, Any]) -> None:
    """Fields compare equal, decimals by value (the ledger may write 100.25 as 100.2500000000)."""
    if not isinstance(actual, dict) or set(actual) != set(expected):
        fail(f"{what}: payload {actual!r}, expected {expected!r}")
    for key, value in expected.items():
        if key == "amount":
            same = decimal.Decimal(str(actual[key])) == decimal.Decimal(value)
        else:
            same = actual[key] == value
        if not same:
            fail(f"{what}: field {key} is {actual[key]!r}, expected {value!r}")


if __name__ == "__main__":
    sys.exit(main())
