"""The URL forms and settings objects of scale-out deployments (no server needed)."""

from __future__ import annotations

import pytest

from tasks_rq import ClusterSettings, SentinelSettings, connection, topology


def test_cluster_url_names_its_seed_nodes_and_credentials() -> None:
    settings = topology.parse("redis+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2:7001/")
    assert settings == ClusterSettings(["10.0.0.1:7000", "10.0.0.2:7001"], "app", "p@ss")


def test_cluster_settings_write_a_url_that_reads_back_the_same() -> None:
    settings = ClusterSettings(["a:7000", "[::1]:7001", "b"], password="p@ss:/word")
    assert settings.nodes == ("a:7000", "[::1]:7001", "b:6379")
    assert topology.parse(settings.url()) == settings


def test_sentinel_url_names_sentinels_service_db_and_both_passwords() -> None:
    settings = topology.parse(
        "redis+sentinel://:primary-secret@s1:26380,s2/my%20service/3"
        "?sentinel_password=sentinel-secret"
    )
    assert settings == SentinelSettings(
        ["s1:26380", "s2:26379"],
        "my service",
        db=3,
        password="primary-secret",
        sentinel_password="sentinel-secret",
    )


def test_sentinel_settings_write_a_url_that_reads_back_the_same() -> None:
    settings = SentinelSettings(
        ["s1", "s2:5000"], "svc", 2, "user", "pw", sentinel_username="watch", sentinel_password="x"
    )
    assert topology.parse(settings.url()) == settings


def test_sentinel_db_defaults_to_0() -> None:
    settings = topology.parse("redis+sentinel://s1:26379/svc")
    assert isinstance(settings, SentinelSettings) and settings.db == 0


def test_redact_hides_the_password_and_the_sentinel_password() -> None:
    url = "redis+sentinel://app:top-secret@s1:26379,s2:26379/svc/0?sentinel_password=also-secret"
    shown = connection.redact(url)
    assert "secret" not in shown
    assert shown.startswith("redis+sentinel://app:***@s1:26379,s2:26379/svc/0")
    assert connection.redact("redis+cluster://:pw@a:1,b:2/") == "redis+cluster://:***@a:1,b:2/"


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("redis+sentinel://:hidden-pw@s1:26379/", "service_name"),
        ("redis+sentinel://s1:26379/svc/zero", "service_name or /service_name/db"),
        ("redis+sentinel://s1:26379/a/1/extra", "service_name or /service_name/db"),
        ("redis+cluster://:hidden-pw@a:7000/3", "only database 0"),
        ("redis+cluster:///", "at least one cluster node"),
        ("redis+cluster://a:99999/", "invalid cluster node address 'a:99999'"),
        ("redis+sentinel://s1:port/svc", "invalid sentinel address"),
    ],
)
def test_malformed_scale_out_url_is_refused_without_showing_the_password(
    url: str, match: str
) -> None:
    with pytest.raises(ValueError, match=match) as caught:
        connection.connect(url)
    assert "hidden-pw" not in str(caught.value)


def test_sentinel_settings_refuse_a_bad_db_or_service_name() -> None:
    with pytest.raises(ValueError, match="db must be an int >= 0"):
        SentinelSettings(["s1"], "svc", db=-1)
    with pytest.raises(ValueError, match="service_name must be a non-empty str"):
        SentinelSettings(["s1"], "")


def test_configure_takes_settings_instead_of_a_url() -> None:
    settings = SentinelSettings(["s1:26379"], "svc", 1, password="pw")
    try:
        connection.configure(sentinel=settings)
        assert connection.resolve_url() == settings.url()
    finally:
        connection.configure()


def test_configure_refuses_two_settings_at_once() -> None:
    with pytest.raises(ValueError, match="at most one of url, cluster and sentinel"):
        connection.configure("redis://localhost:6379/0", cluster=ClusterSettings(["a:7000"]))


def test_url_of_a_sentinel_client_names_the_same_deployment() -> None:
    url = SentinelSettings(["s1:26379", "s2:26380"], "svc", 4, "u", "pw", None, "spw").url()
    client = connection.connect(url)  # a Sentinel client connects only when first used
    assert topology.parse(connection.url_of(client)) == topology.parse(url)


def test_single_server_urls_are_not_scale_out() -> None:
    assert not topology.is_scale_out("redis://localhost:6379/0")
    assert topology.is_scale_out("REDIS+CLUSTER://a:1/")
    assert topology.settings_of(connection.connect("redis://localhost:6379/0")) is None
