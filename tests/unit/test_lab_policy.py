"""Lab policy (issue 22): its config is checked with named errors, quotas count what an owner holds, and the
expiry rule keeps, warns or expires a lock; the store applies an owner's changes only for the owner."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta

import pytest

from lablease.config import ConfigError
from lablease.config.lab import parse_lab_config
from lablease.config.policy import LockPolicy, QuotaLimits, Quotas
from lablease.lab.expiry import Verdict, expiry_of, verdict
from lablease.lab.quota import quota_refusal
from lablease.store import Forbidden, InvalidRequest, NodeRecord, NodeStore
from lablease.store.policy import LockTerms
from lablease.store.pool import POOL_OWNER
from tests.unit.test_lab_config import SEED

NOW = datetime(2026, 12, 7, 12, 0, 0)


def _config(extra: str):  # noqa: ANN202
    return parse_lab_config(__import__("yaml").safe_load(SEED + textwrap.dedent(extra)))


def test_a_provider_policy_and_quotas_load_with_fractional_hours():
    config = _config("""\
        libcloud:
          providers:
            ovh:
              driver: openstack
              driver_args: {username: u, password: p, ex_force_auth_url: 'https://auth.example/v3'}
              policy: {lock_hours: 0.5, lock_hours_max: 72, warn_hours: 0.1, grace_hours: 0.25, hold_hours_max: 48}
          quotas:
            default: {nodes: 10, machine_types: {ovh: 4}}
            owners:
              alice@lab: {nodes: 20}
        """)
    policy = config.libcloud.providers["ovh"].policy
    assert (policy.lock_hours, policy.max_hours, policy.warn_hours, policy.grace_hours) == (0.5, 72, 0.1, 0.25)
    assert config.libcloud.quotas.limits_for("alice@lab") == QuotaLimits(nodes=20, machine_types={"ovh": 4})
    assert config.libcloud.quotas.limits_for("bob@lab") == QuotaLimits(nodes=10, machine_types={"ovh": 4})


def test_a_provider_without_policy_keeps_locks_until_unlocked():
    assert parse_lab_config(__import__("yaml").safe_load(SEED)).libcloud.providers["ovh"].policy is None
    assert expiry_of(_node(), None) is None


@pytest.mark.parametrize("policy,words", [
    ("{lock_hours: 8, lock_hours_max: 4}", "lock_hours_max (4) must not be less than lock_hours (8)"),
    ("{lock_hours: 0}", "greater than 0"),
    ("{lock_hours: 8, grace_hours: -1}", "greater than or equal to 0"),
    ("{lock_hours: 8, lock_hours: 9000000}", "less than or equal to"),
    ("{lock_hours: 8, lock_hour_max: 9}", "lock_hour_max"),
    ("{lock_hours_max: 9}", "lock_hours"),
])
def test_a_wrong_policy_is_an_error_naming_its_key(policy, words):
    with pytest.raises(ConfigError) as err:
        _config(f"""\
            libcloud:
              providers:
                ovh:
                  driver: openstack
                  driver_args: {{username: u, password: p, ex_force_auth_url: 'https://auth.example/v3'}}
                  policy: {policy}
            """)
    assert "libcloud.providers.ovh.policy" in str(err.value) and words in str(err.value)


def test_a_quota_for_a_machine_type_no_provider_serves_is_an_error_listing_the_types():
    with pytest.raises(ConfigError) as err:
        _config("""\
            libcloud:
              providers:
                ovh:
                  driver: openstack
                  driver_args: {username: u, password: p, ex_force_auth_url: 'https://auth.example/v3'}
              quotas: {owners: {alice: {machine_types: {ovhh: 2}}}}
            """)
    assert "ovhh" in str(err.value) and "cloud machine types: ovh" in str(err.value)


def _node(**fields) -> NodeRecord:  # noqa: ANN003
    base = dict(id=1, name="n1.lab", machine_type="ovh", state="ready", locked=True, locked_by="alice",
                locked_since=NOW - timedelta(hours=1))
    return NodeRecord(**{**base, **fields})


QUOTAS = Quotas(default=QuotaLimits(nodes=3, machine_types={"ovh": 2}),
                owners={"bob": QuotaLimits(machine_types={"ovh": 5})})


def test_a_lock_within_every_quota_is_let_through():
    assert quota_refusal(QUOTAS, "alice", "ovh", 1, [_node(name="a")]) is None


def test_the_per_type_quota_counts_only_the_owners_nodes_of_that_type():
    held = [_node(name="a"), _node(name="b", locked_by="carol"), _node(name="c", machine_type="aws")]
    assert quota_refusal(QUOTAS, "alice", "ovh", 1, held) is None
    refused = quota_refusal(QUOTAS, "alice", "ovh", 2, held)
    assert refused == ("over quota: alice may hold at most 2 ovh node(s) (libcloud.quotas.default.machine_types.ovh) "
                       "and holds 1, so 2 more would make 3; retry once some are unlocked")


def test_the_overall_quota_counts_every_type_and_names_what_the_owner_holds():
    held = [_node(name="a"), _node(name="c", machine_type="aws"), _node(name="d", machine_type="aws")]
    refused = quota_refusal(QUOTAS, "alice", "aws", 1, held)
    assert refused is not None and "at most 3 cloud node(s) in all (libcloud.quotas.default.nodes)" in refused
    assert "holds 3 (2 aws, 1 ovh)" in refused


def test_an_owners_own_limit_overrides_the_default_key_by_key():
    held = [_node(name=f"n{i}", locked_by="bob") for i in range(2)]
    assert quota_refusal(QUOTAS, "bob", "ovh", 1, held) is None  # its ovh limit is 5, its total the default 3
    refused = quota_refusal(QUOTAS, "bob", "ovh", 2, held)
    assert refused is not None and "libcloud.quotas.default.nodes" in refused
    refused = quota_refusal(Quotas(owners={"bob": QuotaLimits(machine_types={"ovh": 1})}), "bob", "ovh", 1, held)
    assert refused is not None and "libcloud.quotas.owners.bob.machine_types.ovh" in refused


POLICY = LockPolicy(lock_hours=2, lock_hours_max=8, warn_hours=0.5, grace_hours=0.25)


@pytest.mark.parametrize("expires_in,warned,expected", [
    (timedelta(hours=1), False, Verdict.KEEP),
    (timedelta(minutes=20), False, Verdict.WARN),
    (timedelta(minutes=20), True, Verdict.KEEP),
    (timedelta(minutes=-10), True, Verdict.KEEP),  # within the grace
    (timedelta(minutes=-16), True, Verdict.EXPIRE),
    (timedelta(minutes=-16), False, Verdict.EXPIRE),
])
def test_the_expiry_rule_warns_within_warn_hours_and_expires_after_the_grace(expires_in, warned, expected):
    assert verdict(_node(expires_at=NOW + expires_in, expiry_warned=warned), POLICY, NOW) is expected


def test_a_lock_without_expires_at_ends_lock_hours_after_it_was_locked_or_became_ready_whichever_is_later():
    node = _node(locked_since=NOW - timedelta(hours=3), state_since=NOW - timedelta(hours=4))  # a warm node's
    assert expiry_of(node, POLICY) == NOW - timedelta(hours=1)
    assert verdict(node, POLICY, NOW) is Verdict.EXPIRE
    just_ready = _node(locked_since=NOW - timedelta(hours=3), state_since=NOW)  # its answer is being sent
    assert expiry_of(just_ready, POLICY) == NOW + timedelta(hours=2)


def test_a_held_lock_is_kept_past_its_expiry_until_the_hold_ends():
    node = _node(expires_at=NOW - timedelta(hours=1), hold_until=NOW + timedelta(minutes=1), hold_reason="debug")
    assert verdict(node, POLICY, NOW) is Verdict.KEEP
    assert verdict(node, POLICY, NOW + timedelta(minutes=2)) is Verdict.EXPIRE


@pytest.mark.parametrize("fields", [dict(state="provisioning"), dict(state="destroy-failed"),
                                    dict(locked=False, locked_by=None), dict(locked_by=POOL_OWNER)])
def test_only_a_ready_lock_of_a_user_expires(fields):
    assert verdict(_node(expires_at=NOW - timedelta(hours=5), **fields), POLICY, NOW) is Verdict.KEEP


@pytest.fixture
def store(tmp_path):
    s = NodeStore.open(f"sqlite:///{tmp_path / 's.db'}")
    s.create("c1", {"machine_type": "cloud", "up": True})
    s.lock_many(1, "cloud", "alice", "job")
    yield s
    s.close()


def test_only_the_locks_owner_changes_its_terms_and_each_change_is_one_event(store):
    terms = LockTerms(store)
    later = NOW + timedelta(hours=3)
    with pytest.raises(Forbidden, match="locked by alice, not mallory"):
        terms.owned_change("c1", "mallory", "extend", lambda n, now: {"expires_at": later}, lambda n, now: None)
    with pytest.raises(InvalidRequest, match="too long"):
        terms.owned_change("c1", "alice", "extend", lambda n, now: {"expires_at": later}, lambda n, now: "too long")
    node = terms.owned_change("c1", "alice", "extend", lambda n, now: {"expires_at": later}, lambda n, now: None)
    assert store.get("c1").expires_at == later == node.expires_at
    last = store.events("c1")[-1]
    assert (last.action, last.who, last.new) == ("extend", "alice", {"expires_at": "2026-12-07 15:00:00.000000"})


def test_the_expiring_warning_is_written_once(store):
    terms = LockTerms(store)
    assert terms.warn("c1", lambda n, now: None, "expires soon") is not None
    assert terms.warn("c1", lambda n, now: None, "expires soon") is None
    assert [e.action for e in store.events("c1")].count("expiring") == 1


def _lab_policy():  # noqa: ANN202
    from lablease.lab.policy import LabPolicy

    config = _config("""\
        libcloud:
          providers:
            ovh:
              driver: openstack
              driver_args: {username: u, password: p, ex_force_auth_url: 'https://auth.example/v3'}
              policy: {lock_hours: 2, lock_hours_max: 8}
            aws:
              driver: openstack
              driver_args: {username: u, password: p, ex_force_auth_url: 'https://auth.example/v3'}
        """)
    return LabPolicy(None, config)  # type: ignore[arg-type] - these checks never read the store


def test_a_lock_may_ask_for_less_than_the_maximum_but_not_more_nor_of_a_type_without_policy():
    policy = _lab_policy()
    policy.check_hours("ovh", 0.01)
    policy.check_hours("ovh", None)
    policy.check_hours("aws", None)
    with pytest.raises(InvalidRequest, match=r"at most 8 for ovh \(libcloud.providers.ovh.policy.lock_hours_max\)"):
        policy.check_hours("ovh", 9)
    with pytest.raises(InvalidRequest, match="locks of aws do not expire"):
        policy.check_hours("aws", 1)


def test_a_client_sees_the_expiry_and_a_running_hold_but_not_an_ended_one():
    policy = _lab_policy()
    shown = policy.presented(_node(expires_at=datetime(2099, 1, 1), hold_until=datetime(2099, 1, 2),
                                   hold_reason="gdb"))
    assert shown == {"expires_at": "2099-01-01 00:00:00.000000", "hold_until": "2099-01-02 00:00:00.000000",
                     "hold_reason": "gdb"}
    ended = policy.presented(_node(expires_at=datetime(2099, 1, 1), hold_until=datetime(2000, 1, 1), hold_reason="gdb"))
    assert (ended["hold_until"], ended["hold_reason"]) == (None, None)
    assert policy.presented(_node(machine_type="aws"))["expires_at"] is None


def test_lablease_list_shows_when_a_lock_expires_or_why_it_is_held():
    from lablease.client.render import expires_text

    now = datetime(2026, 12, 7, 12, 0, 0)
    assert expires_text({"expires_at": "2026-12-07 14:05:00.000000"}, now) == "in 2 h 5 min"
    assert expires_text({"expires_at": "2026-12-07 11:55:00.000000"}, now) == "5 min ago"
    assert expires_text({"expires_at": "2026-12-07 11:55:00.000000", "hold_until": "2026-12-07 15:00:00.000000",
                         "hold_reason": "gdb"}, now) == "held 3 h 0 min (gdb)"
    assert expires_text({}, now) == ""


def test_max_ready_age_is_seconds_and_never_negative():
    base = "libcloud:\n  providers:\n    ovh:\n      driver: openstack\n      driver_args: {username: u, password: p, " \
           "ex_force_auth_url: 'https://auth.example/v3'}\n"
    assert _config(base + "      max_ready_age: 3600\n").libcloud.providers["ovh"].max_ready_age == 3600
    with pytest.raises(ConfigError, match="libcloud.providers.ovh.max_ready_age"):
        _config(base + "      max_ready_age: -1\n")


def test_quota_use_lists_each_limited_owner_with_what_it_holds_against_each_limit():
    from lablease.config.policy import Quotas
    from lablease.lab.quota import quota_use
    from lablease.store import NodeRecord

    quotas = Quotas.model_validate({"default": {"machine_types": {"dev": 2}},
                                    "owners": {"big@lab": {"nodes": 10}, "free@lab": {"machine_types": {}}}})
    held = [NodeRecord(id=i, name=f"n{i}", machine_type=t, locked=True, locked_by=o)
            for i, (t, o) in enumerate([("dev", "a@lab"), ("dev", "a@lab"), ("other", "a@lab"), ("dev", "big@lab")])]
    held.append(NodeRecord(id=9, name="idle", machine_type="dev", locked=False))
    rows = {r["owner"]: r for r in quota_use(quotas, held)}
    assert rows["a@lab"] == {"owner": "a@lab", "held": 3, "limit": None, "types": [("dev", 2, 2)]}
    assert rows["big@lab"] == {"owner": "big@lab", "held": 1, "limit": 10, "types": [("dev", 1, 2)]}
    assert rows["free@lab"]["held"] == 0  # named in owners: shown even while it holds nothing
