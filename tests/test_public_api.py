"""The public names and the error hierarchy, as DESIGN.md promises them."""

from __future__ import annotations

import pickle

import pytest

import snworker
from snworker.errors import from_error_fields


def test_all_is_sorted_and_complete():
    assert snworker.__all__ == sorted(snworker.__all__)
    for name in snworker.__all__:
        assert hasattr(snworker, name), name
    import types

    public = {n for n in dir(snworker) if n[0].isalpha()
              and not isinstance(getattr(snworker, n), types.ModuleType)}
    assert public - set(snworker.__all__) == set()


def test_error_hierarchy():
    s = snworker
    assert issubclass(s.AuthorizationError, s.ServiceNowError)
    assert issubclass(s.AuthTokenExpiredError, s.ServiceNowError)
    assert issubclass(s.RequestTimeoutError, s.ApiRequestError)
    assert issubclass(s.RequestTimeoutError, TimeoutError)
    assert issubclass(s.InvalidRequestError, ValueError)
    for leaf in (s.WorkerStartError, s.WorkerCrashedError, s.ConnectionClosedError):
        assert issubclass(leaf, s.WorkerError)
    assert issubclass(s.WorkerError, s.ServiceNowError)


@pytest.mark.parametrize("error", [
    snworker.AuthorizationError("no", "denied"),
    snworker.ApiRequestError("No Record found", 404, "gone", {"X-A": "1"}),
    snworker.RequestTimeoutError("slow"),
    snworker.WorkerCrashedError("dead", -9),
    snworker.InvalidRequestError("bad"),
])
def test_errors_survive_pickling(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


def test_the_kind_table_rebuilds_each_error():
    auth = from_error_fields("authorization", "m", None, "timeout", None)
    assert isinstance(auth, snworker.AuthorizationError) and auth.reason == "timeout"
    api = from_error_fields("api", "Rate limit exceeded", 429, None, {"retry-after": "1"})
    assert isinstance(api, snworker.ApiRequestError)
    assert api.status == 429 and api.headers["Retry-After"] == "1"
    assert isinstance(from_error_fields("timeout", "m", None, None, None),
                      snworker.RequestTimeoutError)
    assert isinstance(from_error_fields("token_expired", "m", None, None, None),
                      snworker.AuthTokenExpiredError)
    assert isinstance(from_error_fields("invalid_request", "m", None, None, None),
                      snworker.InvalidRequestError)
    assert isinstance(from_error_fields("no such kind", "m", None, None, None),
                      snworker.WorkerError)


def test_retry_policy_is_plain_data_that_crosses():
    policy = snworker.RetryPolicy(attempts=2, retry_statuses=(503,))
    assert snworker.RetryPolicy.from_wire(policy.to_wire()) == policy
    with pytest.raises(ValueError):
        snworker.RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        snworker.RetryPolicy.from_wire((1, 2, 3, 4, 5, 6, 7, 8, 9))


@pytest.mark.parametrize("instance, expected", [
    ("dev12345", "https://dev12345.service-now.com"),
    ("https://dev12345.service-now.com/", "https://dev12345.service-now.com"),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://localhost:1", "http://localhost:1"),
    ("dev12345.service-now.com", "https://dev12345.service-now.com"),  # a host name, as gh takes
    ("Dev12345.Service-Now.com:8443", "https://dev12345.service-now.com:8443"),
])
def test_instance_urls_are_normalized(instance, expected):
    from snworker.settings import normalize_instance_url

    assert normalize_instance_url(instance) == expected


@pytest.mark.parametrize("instance", [
    "http://dev12345.service-now.com",       # rule 8: https only, but for loopback
    "ftp://x", "https://x.service-now.com/api", "https://user@x.service-now.com", "dev 1", "",
    "dev12345.service-now.com/api", "user@dev12345.service-now.com", "x..service-now.com",
])
def test_connect_refuses_bad_instances_before_starting_anything(instance):
    with pytest.raises(snworker.InvalidRequestError):
        snworker.connect(instance, "cid")


@pytest.mark.parametrize("redirect", [
    "https://127.0.0.1:1/cb", "http://example.com:80/cb", "http://127.0.0.1/cb", "http://0.0.0.0:1/",
])
def test_connect_refuses_non_loopback_redirects(redirect):
    with pytest.raises(snworker.InvalidRequestError):
        snworker.connect("dev1", "cid", redirect_uri=redirect)
