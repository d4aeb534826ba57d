"""The /nodes API over HTTP against `lablease serve` (subprocess), on SQLite and on PostgreSQL.

One server per database for the module; each test works on its own machine type and node
names, so tests do not see each other's nodes.
"""

from __future__ import annotations

import itertools
import re

import httpx
import pytest

from lablease.testing.lockserver import start_lock_server

pytestmark = pytest.mark.integration

TOKEN = "admin-token-7f3c9"
_seq = itertools.count(1)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    workdir = tmp_path_factory.mktemp(f"lock-{request.param}")
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_server").create_database(f"api_{next(_seq)}")
    srv = start_lock_server(workdir, database_url=url, admin_token=TOKEN, lab_domain="front.example.com",
                            extra={"max_body_bytes": 4096})
    yield srv
    srv.stop()
    assert TOKEN not in srv.process.log_path.read_text(), "the admin token leaked into the log"


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def admin(server):
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture
def mtype():
    """A machine type of this test only."""
    return f"mt{next(_seq)}"


def make(admin, mtype, n, **fields):
    names = [f"{mtype}-{i:03d}.front.example.com" for i in range(1, n + 1)]
    for name in names:
        body = {"name": name, "machine_type": mtype, "up": True, **fields}
        r = admin.post("/nodes/", json=body)
        assert r.status_code == 200, r.text
    return names


def test_create_answers_empty_object_and_get_returns_paddles_fields_plus_extra_keys(admin, http, mtype):
    r = admin.post("/nodes/", json={"name": f"{mtype}.x", "machine_type": mtype, "is_vm": True,
                                    "os_type": "ubuntu", "os_version": 22.04, "arch": "x86_64"})
    assert r.status_code == 200 and r.json() == {}
    node = http.get(f"/nodes/{mtype}.x/").json()
    for key in ("name", "description", "up", "machine_type", "is_vm", "vm_host", "os_type", "os_version",
                "arch", "locked", "locked_since", "locked_by", "mac_address", "ssh_pub_key"):
        assert key in node
    assert "id" not in node and "user" not in node
    assert node["up"] is None and node["locked"] is False and node["is_vm"] is True
    assert node["os_version"] == "22.04"
    assert node["state"] == "idle" and node["addresses"] == [] and node["cloud_server_id"] is None
    assert node["last_error"] is None and node["created_at"] and node["updated_at"]


def test_duplicate_name_is_400_and_missing_name_is_400_naming_it(admin, mtype):
    make(admin, mtype, 1)
    r = admin.post("/nodes/", json={"name": f"{mtype}-001.front.example.com"})
    assert r.status_code == 400
    assert r.json() == {"message": f"Node with name {mtype}-001.front.example.com already exists"}
    r = admin.post("/nodes/", json={"machine_type": mtype})
    assert r.status_code == 400 and "name" in r.json()["message"]


def test_a_node_can_be_created_locked(admin, http, mtype):
    admin.post("/nodes/", json={"name": f"{mtype}.l", "locked": True, "locked_by": "u@h", "description": "d"})
    node = http.get(f"/nodes/{mtype}.l").json()
    assert node["locked"] is True and node["locked_by"] == "u@h" and node["locked_since"]


def test_get_of_a_missing_node_is_404_with_a_message(http):
    r = http.get("/nodes/nope.example.com/")
    assert r.status_code == 404 and r.json() == {"message": "node not found"}


@pytest.mark.parametrize("path", ["/nodes", "/nodes/machine_types"])
def test_paths_work_without_the_trailing_slash(http, path):
    assert http.get(path).status_code == 200
    assert http.get(path + "/").status_code == 200


def test_list_filters_by_type_alternatives_lock_state_up_owner_os_and_count(admin, http, mtype):
    a = make(admin, mtype + "a", 3, os_type="ubuntu", os_version="22.04")
    b = make(admin, mtype + "b", 2, os_type="centos")
    admin.put(f"/nodes/{b[1]}/", json={"up": False})
    http.put(f"/nodes/{a[0]}/lock/", json={"locked": True, "locked_by": "alice", "description": "j"})
    names = lambda r: sorted(n["name"] for n in r.json())  # noqa: E731
    both = f"{mtype}a|{mtype}b"
    assert names(http.get("/nodes/", params={"machine_type": both})) == sorted(a + b)
    assert names(http.get("/nodes/", params={"machine_type": both, "locked": "1"})) == [a[0]]
    assert names(http.get("/nodes/", params={"machine_type": both, "locked": "true"})) == [a[0]]
    assert names(http.get("/nodes/", params={"machine_type": both, "locked": "0"})) == sorted(a[1:] + b)
    assert names(http.get("/nodes/", params={"machine_type": both, "locked": "false"})) == sorted(a[1:] + b)
    assert names(http.get("/nodes/", params={"machine_type": both, "up": "0"})) == [b[1]]
    assert names(http.get("/nodes/", params={"machine_type": both, "locked_by": "alice"})) == [a[0]]
    assert names(http.get("/nodes/", params={"machine_type": both, "os_type": "centos"})) == b
    assert names(http.get("/nodes/", params={"machine_type": both, "os_version": "22.04"})) == a
    assert len(http.get("/nodes/", params={"machine_type": both, "count": "2"}).json()) == 2


def test_list_count_and_booleans_that_are_not_valid_are_400_naming_the_field(http):
    r = http.get("/nodes/", params={"count": "ten"})
    assert r.status_code == 400 and r.json() == {"message": "count must be an integer"}
    r = http.get("/nodes/", params={"locked": "maybe"})
    assert r.status_code == 400 and "locked" in r.json()["message"]


def test_update_applies_known_keys_ignores_unknown_ones_and_never_renames(admin, http, mtype):
    [name] = make(admin, mtype, 1)
    r = http.put(f"/nodes/{name}/", json={"description": "new", "up": False, "ssh_pub_key": "ssh-ed25519 AAA",
                                         "mac_address": "aa:bb:cc:dd:ee:ff", "name": "other", "color": "red"})
    assert r.status_code == 200 and r.json() == {}
    node = http.get(f"/nodes/{name}/").json()
    assert (node["description"], node["up"], node["ssh_pub_key"]) == ("new", False, "ssh-ed25519 AAA")
    assert node["name"] == name and "color" not in node


def test_vm_host_is_given_by_name_and_returned_as_the_hosts_json(admin, http, mtype):
    host, guest = make(admin, mtype, 2)
    assert http.put(f"/nodes/{guest}/", json={"vm_host": host, "is_vm": True}).status_code == 200
    node = http.get(f"/nodes/{guest}/").json()
    assert node["vm_host"]["name"] == host and node["vm_host"]["machine_type"] == mtype
    r = http.put(f"/nodes/{guest}/", json={"vm_host": "no-such-host"})
    assert r.status_code == 400 and "vm_host" in r.json()["message"]


def test_update_of_a_missing_node_is_404(http):
    r = http.put("/nodes/nope.example.com/", json={"up": True})
    assert r.status_code == 404 and r.json() == {"message": "attempted to update a non-existent node"}


def test_a_forbidden_lock_change_through_put_is_403_json_not_500(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    http.put(f"/nodes/{name}/lock/", json={"locked": True, "locked_by": "alice", "description": "j"})
    r = http.put(f"/nodes/{name}/", json={"locked": True, "locked_by": "bob"})
    assert r.status_code == 403 and r.json() == {"message": "Cannot lock an already-locked node"}
    r = http.put(f"/nodes/{name}/", json={"locked": False, "locked_by": "bob"})
    assert r.status_code == 403 and r.json() == {"message": "Cannot unlock - locked_by values must match"}
    r = http.put(f"/nodes/{name}/", json={"locked_by": "bob"})
    assert r.status_code == 403
    assert http.get(f"/nodes/{name}/").json()["locked_by"] == "alice"


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_lock_endpoint_locks_unlocks_and_checks(http, admin, mtype, method):
    [name] = make(admin, mtype, 1)
    url = f"/nodes/{name}/lock/"
    r = http.request(method, url, json={"name": name, "locked": True, "locked_by": "alice", "description": "j1"})
    assert r.status_code == 200
    assert r.json() == {"name": name, "locked": True, "locked_by": "alice", "machine_type": mtype, "is_vm": False}
    r = http.request(method, url, json={"description": "j1 again"})  # a check: applies other fields
    assert r.status_code == 200 and r.json()["locked"] is True
    assert http.get(f"/nodes/{name}/").json()["description"] == "j1 again"
    r = http.request(method, url.rstrip("/"), json={"locked": False, "locked_by": "alice"})
    assert r.status_code == 200 and r.json()["locked"] is False and r.json()["locked_by"] is None
    node = http.get(f"/nodes/{name}/").json()
    assert node["locked_since"] is None and node["locked_by"] is None


def test_lock_rules_follow_paddles(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    url = f"/nodes/{name}/lock/"
    r = http.put(url, json={"locked": True})
    assert r.status_code == 400 and r.json() == {"message": "Cannot lock without specifying locked_by"}
    assert http.put(url, json={"locked": True, "locked_by": "alice", "description": "d"}).status_code == 200
    # the same owner with the same description re-locks; anyone else is refused
    assert http.put(url, json={"locked": True, "locked_by": "alice", "description": "d"}).status_code == 200
    r = http.put(url, json={"locked": True, "locked_by": "alice", "description": "other"})
    assert r.status_code == 403 and r.json() == {"message": "Cannot lock an already-locked node"}
    assert http.put(url, json={"locked": True, "locked_by": "bob", "description": "d"}).status_code == 403
    r = http.put(url, json={"locked": False, "locked_by": "bob"})
    assert r.status_code == 403 and r.json() == {"message": "Cannot unlock - locked_by values must match"}
    r = http.put(url, json={"locked": False, "locked_by": "alice", "description": "not d"})
    assert r.status_code == 403 and "description" in r.json()["message"]
    assert http.put(url, json={"locked": False, "locked_by": "alice"}).status_code == 200
    r = http.put(url, json={"locked": False, "locked_by": "alice"})
    assert r.status_code == 403 and r.json() == {"message": "Cannot unlock an already-unlocked node"}
    assert http.put("/nodes/nope.example.com/lock/", json={"locked": True, "locked_by": "a"}).status_code == 404


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_lock_endpoint_answers_other_methods_with_405(http, admin, mtype, method):
    """paddles answered 400 "lock takes PUT or POST"; the message stays, the status says what it is."""
    [name] = make(admin, mtype, 1)
    r = http.request(method, f"/nodes/{name}/lock/")
    assert r.status_code == 405 and r.headers["allow"] == "POST, PUT"
    assert r.json() == {"message": "lock takes PUT or POST"}


def test_locked_since_always_carries_microseconds(http, admin, mtype):
    names = make(admin, mtype, 5)
    got = http.post("/nodes/lock_many/", json={"count": 5, "locked_by": "a", "machine_type": mtype,
                                               "description": None}).json()
    for node in got:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", node["locked_since"])
    assert sorted(n["name"] for n in got) == names


def test_lock_many_takes_nodes_in_name_order_and_answers_full_json(http, admin, mtype):
    names = make(admin, mtype, 4)
    r = http.post("/nodes/lock_many/", json={"count": 2, "locked_by": "a", "machine_type": mtype,
                                             "description": "job"})
    assert r.status_code == 200
    assert [n["name"] for n in r.json()] == names[:2]
    assert all(n["locked"] and n["locked_by"] == "a" and n["description"] == "job" for n in r.json())
    assert "ssh_pub_key" in r.json()[0]
    r = http.post("/nodes/lock_many", json={"count": "2", "locked_by": "b", "machine_type": mtype,
                                            "description": None})
    assert [n["name"] for n in r.json()] == names[2:]


def test_lock_many_requires_its_four_fields(http):
    r = http.post("/nodes/lock_many/", json={"count": 1, "machine_type": "x"})
    assert r.status_code == 400
    assert r.json() == {"message": "must pass these fields: locked_by, description"}


@pytest.mark.parametrize("count", ["two", 1.5, 0, -1, True, None])
def test_lock_many_count_must_be_a_positive_integer_else_400(http, mtype, count):
    r = http.post("/nodes/lock_many/", json={"count": count, "locked_by": "a", "machine_type": mtype,
                                             "description": None})
    assert r.status_code == 400 and "count" in r.json()["message"]


def test_lock_many_with_too_few_free_nodes_is_503_and_locks_nothing(http, admin, mtype):
    names = make(admin, mtype, 3)
    http.put(f"/nodes/{names[0]}/lock/", json={"locked": True, "locked_by": "x", "description": "d"})
    r = http.post("/nodes/lock_many/", json={"count": 3, "locked_by": "a", "machine_type": mtype,
                                             "description": None})
    assert r.status_code == 503 and r.json() == {"message": "only 2 nodes available"}
    assert [n["locked"] for n in http.get("/nodes/", params={"machine_type": mtype}).json()] == [True, False, False]


def test_lock_many_takes_only_up_nodes_matching_os_and_arch(http, admin, mtype):
    names = make(admin, mtype, 5, os_type="ubuntu", os_version="22.04", arch="x86_64")
    admin.put(f"/nodes/{names[0]}/", json={"up": None})
    admin.put(f"/nodes/{names[1]}/", json={"up": False})
    admin.put(f"/nodes/{names[2]}/", json={"os_version": "20.04"})
    admin.put(f"/nodes/{names[3]}/", json={"arch": "aarch64"})
    body = {"count": 1, "locked_by": "a", "machine_type": mtype, "description": None,
            "os_type": "ubuntu", "os_version": 22.04, "arch": "x86_64"}
    r = http.post("/nodes/lock_many/", json=body)
    assert [n["name"] for n in r.json()] == [names[4]]
    r = http.post("/nodes/lock_many/", json=body)
    assert r.status_code == 503 and r.json() == {"message": "only 0 nodes available"}


def test_lock_many_and_unlock_many_take_post_only(http):
    """paddles answered 400; the answer keeps its message, as a 405 naming the one method served."""
    for path in ("/nodes/lock_many/", "/nodes/unlock_many/"):
        response = http.get(path)
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert response.json() == {"message": "this endpoint takes POST only"}


def test_unlock_many_is_all_or_nothing(http, admin, mtype):
    names = make(admin, mtype, 3)
    mine = http.post("/nodes/lock_many/", json={"count": 2, "locked_by": "a", "machine_type": mtype,
                                                "description": None}).json()
    http.put(f"/nodes/{names[2]}/lock/", json={"locked": True, "locked_by": "b", "description": "d"})
    r = http.post("/nodes/unlock_many/", json={"names": names, "locked_by": "a"})
    assert r.status_code == 403 and names[2] in r.json()["message"]
    assert [n["locked_by"] for n in http.get("/nodes/", params={"machine_type": mtype}).json()] == ["a", "a", "b"]
    r = http.post("/nodes/unlock_many/", json={"names": [n["name"] for n in mine], "locked_by": "a"})
    assert r.status_code == 200
    assert r.json() == [{"name": n, "locked": False, "locked_by": None, "machine_type": mtype, "is_vm": False}
                        for n in names[:2]]


def test_unlock_many_with_an_unknown_name_is_400(http, admin, mtype):
    names = make(admin, mtype, 1)
    r = http.post("/nodes/unlock_many/", json={"names": names + ["ghost"], "locked_by": "a"})
    assert r.status_code == 400 and r.json() == {"message": "Could not find all nodes!"}
    r = http.post("/nodes/unlock_many/", json={"names": "not-a-list", "locked_by": "a"})
    assert r.status_code == 400 and "names" in r.json()["message"]


def test_machine_types_are_sorted_and_distinct(http, admin, mtype):
    make(admin, mtype + "z", 2)
    make(admin, mtype + "a", 1)
    admin.post("/nodes/", json={"name": f"{mtype}.untyped"})
    types = http.get("/nodes/machine_types/").json()
    assert types == sorted(set(types)) and None not in types
    assert {mtype + "a", mtype + "z"} <= set(types)


def test_delete_answers_empty_object_then_the_node_is_gone(admin, http, mtype):
    [name] = make(admin, mtype, 1)
    r = admin.delete(f"/nodes/{name}/")
    assert r.status_code == 200 and r.json() == {}
    assert http.get(f"/nodes/{name}/").status_code == 404
    assert admin.delete(f"/nodes/{name}").status_code == 404


def test_events_record_lock_unlock_and_update_with_old_and_new_state(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    http.put(f"/nodes/{name}/lock/", json={"locked": True, "locked_by": "alice", "description": "j"})
    http.put(f"/nodes/{name}/", json={"description": "j2"})
    http.post("/nodes/unlock_many/", json={"names": [name], "locked_by": "alice"})
    events = http.get(f"/nodes/{name}/events/").json()
    actions = [e["action"] for e in events]
    assert actions[0] == "create" and actions[-3:] == ["lock", "update", "unlock"]
    lock, upd, unlock = events[-3:]
    assert lock["who"] == "alice" and lock["old"]["locked"] is False and lock["new"]["locked"] is True
    assert upd["old"] == {"description": "j"} and upd["new"] == {"description": "j2"}
    assert unlock["old"]["locked_by"] == "alice" and unlock["new"]["locked_by"] is None
    assert http.get("/nodes/nope.example.com/events/").status_code == 404


@pytest.mark.parametrize("body,field", [
    ({"up": "perhaps"}, "up"),
    ({"machine_type": "x" * 33}, "machine_type"),
    ({"locked_by": ["a"]}, "locked_by"),
])
def test_validation_failures_are_400_naming_the_field_never_422(http, admin, mtype, body, field):
    [name] = make(admin, mtype, 1)
    r = http.put(f"/nodes/{name}/", json=body)
    assert r.status_code == 400 and field in r.json()["message"] and set(r.json()) == {"message"}


def test_bodies_that_are_not_json_objects_are_400(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    r = http.put(f"/nodes/{name}/", content=b"{not json")
    assert r.status_code == 400 and r.json() == {"message": "could not decode JSON body"}
    r = http.put(f"/nodes/{name}/", content=b"[1, 2]")
    assert r.status_code == 400 and "JSON object" in r.json()["message"]


def test_json_without_a_content_type_is_accepted_as_teuthology_sends_it(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    r = http.put(f"/nodes/{name}/lock/", content=b'{"locked": true, "locked_by": "t", "description": "x"}')
    assert r.status_code == 200 and r.json()["locked"] is True


def test_errors_of_unknown_methods_are_json_messages(http):
    r = http.patch("/nodes/")
    assert r.status_code == 405 and "message" in r.json()


def test_creating_and_deleting_need_the_admin_token_but_locking_does_not(http, admin, mtype):
    r = http.post("/nodes/", json={"name": f"{mtype}.t"})
    assert r.status_code == 401 and "Authorization: Bearer" in r.json()["message"]
    r = http.post("/nodes/", json={"name": f"{mtype}.t"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 403 and TOKEN not in r.text
    [name] = make(admin, mtype, 1)
    assert http.delete(f"/nodes/{name}/").status_code == 401
    assert http.put(f"/nodes/{name}/lock/", json={"locked": True, "locked_by": "a", "description": "d"}).status_code == 200
    assert http.put(f"/nodes/{name}/", json={"description": "e"}).status_code == 200


def test_request_bodies_over_the_limit_are_refused_with_413(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    r = http.put(f"/nodes/{name}/", json={"description": "x" * 5000})
    assert r.status_code == 413 and "limit" in r.json()["message"]
    assert http.get(f"/nodes/{name}/").json()["description"] is None
    r = http.post("/nodes/lock_many/", json={"count": 1, "locked_by": "a", "machine_type": mtype,
                                             "description": "x" * 5000})
    assert r.status_code == 413 and "limit" in r.json()["message"]
    assert http.get(f"/nodes/{name}/").json()["locked"] is False


def test_values_the_database_cannot_hold_are_400_not_500(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    r = http.post("/nodes/lock_many/", json={"count": 10**30, "locked_by": "a", "machine_type": mtype,
                                             "description": None})
    assert r.status_code == 400 and "count must be at most" in r.json()["message"]
    assert http.get("/nodes/", params={"count": str(10**30)}).status_code == 400
    r = http.put(f"/nodes/{name}/", json={"description": "a\x00b"})
    assert r.status_code == 400 and "description" in r.json()["message"] and "NUL" in r.json()["message"]
    assert http.get("/nodes/a%00b/").status_code in (400, 404)


def test_locked_since_given_in_an_update_is_parsed_or_refused(http, admin, mtype):
    [name] = make(admin, mtype, 1)
    http.put(f"/nodes/{name}/lock/", json={"locked": True, "locked_by": "a", "description": "d"})
    assert http.put(f"/nodes/{name}/", json={"locked_since": "2026-01-02 03:04:05"}).status_code == 200
    assert http.get(f"/nodes/{name}/").json()["locked_since"] == "2026-01-02 03:04:05.000000"
    for given, stored in [("2024-02-29T23:30:00.5+01:00", "2024-02-29 22:30:00.500000"),
                          ("2000-02-29", "2000-02-29 00:00:00.000000"), ("2026-12-31 23:59Z", "2026-12-31 23:59:00.000000")]:
        assert http.put(f"/nodes/{name}/", json={"locked_since": given}).status_code == 200, given
        assert http.get(f"/nodes/{name}/").json()["locked_since"] == stored
    # What the document's pattern refuses, the server refuses: no date that does not exist, nothing around it.
    pattern = http.get("/openapi.json").json()["components"]["schemas"]["NodeFields"]["properties"][
        "locked_since"]["anyOf"][0]["pattern"]
    for refused in ("yesterday", "", "2026-02-29", "1900-02-29", "2026-11-31", "2026-01-02 24:00", " 2026-01-02",
                    "2026-01-02\n", "20260102", "2026-01-02T03:04:05.1234567", "0001-01-01T00:00+01:00"):
        assert not re.fullmatch(pattern, refused), refused  # (JSON schema's $ is the very end, as fullmatch's)
        r = http.put(f"/nodes/{name}/", json={"locked_since": refused})
        assert r.status_code == 400 and "locked_since" in r.json()["message"], refused


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_fast_lane_answers_exactly_like_the_fastapi_routes(tmp_path, request, database):
    """lock_many/unlock_many are served by a lean ASGI layer (on PostgreSQL settled in the event loop
    by one statement, handing over to the store when it cannot); the FastAPI routes are the reference."""
    from fastapi.testclient import TestClient

    from lablease.server.app import create_app
    from lablease.lockapi.settings import LockSettings

    requests = [
        ("/nodes/lock_many/", b'{"count": 2, "machine_type": "t", "locked_by": "a", "description": "d"}'),
        ("/nodes/lock_many", b'{"count": "1", "machine_type": "t|u", "locked_by": "b", "description": null}'),
        ("/nodes/lock_many/", b'{"count": 5, "machine_type": "t", "locked_by": "a", "description": null}'),
        ("/nodes/lock_many/", b'{"count": 1}'),
        ("/nodes/lock_many/", b'{"count": "two", "machine_type": "t", "locked_by": "a", "description": null}'),
        ("/nodes/lock_many/", b'{"count": true, "machine_type": "t", "locked_by": "a", "description": null}'),
        ("/nodes/lock_many/", b'[1]'),
        ("/nodes/lock_many/", b'{oops'),
        ("/nodes/lock_many/", b''),
        ("/nodes/unlock_many/", b'{"names": ["n1", "n3"], "locked_by": "a"}'),
        ("/nodes/unlock_many/", b'{"names": ["n1", "ghost"], "locked_by": "a"}'),
        ("/nodes/unlock_many/", b'{"names": ["n1", "n2"], "locked_by": "a"}'),
        ("/nodes/unlock_many", b'{"names": "n1", "locked_by": "a"}'),
        ("/nodes/unlock_many/", b'{"names": ["n3", "n3"], "locked_by": "a"}'),
        ("/nodes/lock_many/", b'{"count": 1, "machine_type": "t", "locked_by": "c", "description": "x",'
                              b' "os_type": "ubuntu", "os_version": 22.04}'),
        ("/nodes/lock_many/", b'{"count": 1, "machine_type": "v", "locked_by": "c", "description": "x"}'),
        ("/nodes/unlock_many/", b'{"names": ["v1"], "locked_by": "c", "description": "y"}'),
        ("/nodes/unlock_many/", b'{"names": ["v1"], "locked_by": "c", "description": "x"}'),
    ]

    def answers(fast: bool) -> list:
        data_dir = tmp_path / ("fast" if fast else "slow")
        if database == "postgresql":
            url = request.getfixturevalue("postgres_server").create_database(f"lane_{next(_seq)}")
            settings = LockSettings.from_mapping({"lablease": {"database_url": url}}, data_dir=data_dir)
        else:
            settings = LockSettings.defaults(data_dir=data_dir)
        out = []
        with TestClient(create_app(settings, fast_paths=fast)) as client:
            assert (client.app.state.lane is not None) == (fast and database == "postgresql")
            for i in range(1, 5):
                client.post("/nodes/", json={"name": f"n{i}", "machine_type": "t", "up": True,
                                             "os_type": "ubuntu", "os_version": "22.04"})
            client.post("/nodes/", json={"name": "h1", "machine_type": "host", "up": True})
            client.post("/nodes/", json={"name": "v1", "machine_type": "v", "up": True, "is_vm": True,
                                         "vm_host": "h1"})
            for path, body in requests:
                r = client.post(path, content=body)
                data = r.json()
                for node in data if isinstance(data, list) else []:
                    for record in (node, node.get("vm_host") or {}):
                        for key in ("locked_since", "created_at", "updated_at"):
                            record.pop(key, None)
                out.append((path, r.status_code, data))
            lane = client.app.state.lane
            if lane is not None:  # both ways through the lane were taken
                assert lane.settled >= 4 and lane.handed_over >= 4, (lane.settled, lane.handed_over)
        return out

    assert answers(fast=True) == answers(fast=False)


def test_the_lock_lane_hands_requests_to_the_store_when_its_database_pool_fails(tmp_path, postgres_server):
    """A database error in the event-loop lane is never the client's problem: nothing was written
    there, and the threaded store path answers (and writes the events) instead."""
    from fastapi.testclient import TestClient

    from lablease.server.app import create_app
    from lablease.lockapi.settings import LockSettings

    url = postgres_server.create_database(f"lane_{next(_seq)}")
    settings = LockSettings.from_mapping({"lablease": {"database_url": url}}, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        for i in (1, 2):
            assert client.post("/nodes/", json={"name": f"n{i}", "machine_type": "t", "up": True}).status_code == 200
        lane = client.app.state.lane
        client.portal.call(lane.close)  # every lane request now fails with PoolClosed
        r = client.post("/nodes/lock_many/", json={"count": 2, "machine_type": "t", "locked_by": "a",
                                                   "description": "d"})
        assert r.status_code == 200 and [n["name"] for n in r.json()] == ["n1", "n2"]
        r = client.post("/nodes/unlock_many/", json={"names": ["n2", "n1"], "locked_by": "a"})
        assert r.status_code == 200 and [n["name"] for n in r.json()] == ["n2", "n1"]
        assert (lane.settled, lane.handed_over) == (0, 2)
        assert [e["action"] for e in client.get("/nodes/n1/events/").json()] == ["create", "update", "lock", "unlock"]
