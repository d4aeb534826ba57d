"""The on-disk token cache: shared between instances (processes), private to its owner, never past its margin."""

from __future__ import annotations

import datetime as dt
import stat

from libcloud.common.openstack_identity import OpenStackAuthenticationCacheKey, OpenStackAuthenticationContext

from lablease.provision.tokencache import FileTokenCache, MemoryTokenCache

KEY = OpenStackAuthenticationCacheKey("http://127.0.0.1:5000", "demo", "project", "demo", "Default", "default")


def _context(seconds: float) -> OpenStackAuthenticationContext:
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return OpenStackAuthenticationContext("tok-123", expiration=expires, user={"id": "u"}, urls={"compute": []})


def test_a_token_put_by_one_cache_is_found_by_another_on_the_same_directory(tmp_path):
    FileTokenCache(tmp_path, margin=300).put(KEY, _context(3600))
    found = FileTokenCache(tmp_path, margin=300).get(KEY)
    assert found is not None and found.token == "tok-123" and found.urls == {"compute": []}
    # libcloud sees the expiry early by the margin, so it re-authenticates before the real end.
    left = found.expiration - dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert dt.timedelta(seconds=3200) < left < dt.timedelta(seconds=3301)


def test_a_token_inside_the_margin_is_not_handed_out(tmp_path):
    cache = FileTokenCache(tmp_path, margin=300)
    cache.put(KEY, _context(200))  # lifetime 200 s: margin shrinks to a fifth, 40 s
    assert cache.get(KEY) is not None
    cache.put(KEY, _context(-1))
    assert cache.get(KEY) is None


def test_the_cache_file_is_readable_by_its_owner_only_and_clear_removes_it(tmp_path):
    cache = FileTokenCache(tmp_path)
    cache.put(KEY, _context(3600))
    files = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    assert len(files) == 1 and stat.S_IMODE(files[0].stat().st_mode) == 0o600
    cache.clear(KEY)
    assert cache.get(KEY) is None


def test_other_accounts_do_not_see_the_token(tmp_path):
    cache = FileTokenCache(tmp_path)
    cache.put(KEY, _context(3600))
    assert cache.get(KEY._replace(user_id="someone-else")) is None


def test_memory_cache_has_the_same_contract():
    cache = MemoryTokenCache(margin=60)
    cache.put(KEY, _context(3600))
    assert cache.get(KEY).token == "tok-123"
    cache.put(KEY, _context(30))
    assert cache.get(KEY) is None
