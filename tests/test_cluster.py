"""Every feature on a 3-master Redis Cluster, with real worker and scheduler processes.

One cluster serves the whole module (it takes about 2 s to start); each test starts from
empty masters. The fixtures ``redis_url`` and ``client`` are overridden here, so the tests
imported from the scheduling, repeat and CLI modules run unchanged against the cluster:
their workers, schedulers and job processes get the ``redis+cluster://`` URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jobs
import pytest
import redis
from conftest import Processes, output_of, wait_for
from redis.cluster import RedisCluster
from scaleout import Cluster
from schedulers import start_scheduling_worker, subscribers, wait_for_holder

# The same behaviours as on a single server (see each module for what they check).
from test_cli import (  # noqa: F401
    test_info_counts_jobs_per_status_for_each_queue,
    test_info_names_the_scheduler_holding_each_queue,
    test_jobs_cancel_moves_a_scheduled_job_to_canceled,
    test_jobs_list_filters_by_queue_and_status,
    test_jobs_requeue_failed_leaves_other_queues_alone,
    test_jobs_show_json_has_result_times_and_retries_left,
    test_purge_with_yes_deletes_the_jobs_and_every_trace_of_them,
)
from test_repeat import (  # noqa: F401
    test_cancel_of_a_running_job_lets_the_run_end_and_stops_the_repeats,
    test_canceled_scheduled_job_never_runs,
    test_failed_run_stops_the_repeats,
    test_history_keeps_each_runs_result_newest_first,
    test_repeat_starts_each_run_its_interval_after_the_previous_run_ended,
    test_retries_used_up_end_the_job_failed,
    test_retry_waits_in_the_scheduled_registry,
    test_reused_job_id_starts_a_fresh_history,
    test_run_that_succeeds_on_retry_counts_once_and_repeats_go_on,
    test_scheduled_job_id_cannot_be_enqueued_twice,
    worker,
)
from test_scheduling import (  # noqa: F401
    test_after_job_waits_in_the_scheduled_registry_not_in_the_queue,
    test_burst_worker_with_scheduler_promotes_again_on_the_next_run,
    test_graceful_stop_of_the_lock_holder_hands_the_queue_over_within_1_s,
    test_graceful_stop_releases_only_the_locks_the_scheduler_holds,
    test_jobs_due_while_no_worker_ran_all_run_when_one_starts,
    test_jobs_start_at_their_due_time_and_never_early,
    test_lock_script_never_touches_a_lock_held_by_another_token,
    test_options_combine_with_at_and_after,
    test_promote_drops_a_job_whose_hash_was_deleted,
    test_promote_moves_more_than_one_batch_in_one_pass,
    test_promote_moves_nothing_once_the_lock_is_anothers,
    test_promote_queues_due_jobs_in_due_order_and_leaves_later_ones,
    test_scheduler_child_killed_alone_is_restarted_and_jobs_still_run,
    test_sigkill_of_the_lock_holder_hands_the_queue_over_within_5_s,
    test_stalled_scheduler_neither_promotes_nor_extends_the_new_owners_lock,
    test_standalone_scheduler_moves_due_jobs_onto_the_queue,
)

from tasks_rq import FinishedJobRegistry, Job, JobStatus, Queue, connection, keys
from tasks_rq import queue as queue_module

CLUSTER_START_LIMIT_S = 8.0
"""Start-up bound: about 2 s here (each master waits 2 s before it calls itself ok), with
room for a CI box whose 2 cores are busy with other test runs."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    made = Cluster(Path(tmp_path_factory.mktemp("cluster")))
    made.start()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture(scope="module")
def redis_url(cluster: Cluster) -> str:
    return cluster.url


@pytest.fixture()
def client(cluster: Cluster, redis_url: str) -> Iterator[redis.Redis]:
    """Empty masters (no keys, no scripts), configured as the library's connection."""
    cluster.flush()
    made = connection.connect(redis_url)
    connection.configure(url=redis_url)
    queue_module._known_queues.clear()
    yield made
    made.close()


def node_of(client: redis.Redis, queue: str) -> str:
    """Return the name of the master that holds ``queue``'s keys."""
    cluster_client: RedisCluster = client  # type: ignore[assignment]
    return str(cluster_client.get_node_from_key(keys.for_queue(queue).queue).name)


def test_cluster_starts_within_its_bound(cluster: Cluster) -> None:
    assert cluster.startup_s <= CLUSTER_START_LIMIT_S


def test_the_connection_is_a_cluster_client_and_children_get_the_same_url(
    client: redis.Redis, redis_url: str
) -> None:
    assert isinstance(client, RedisCluster)
    assert connection.url_of(client) == redis_url
    assert connection.url_of(connection.connect(redis_url)).startswith("redis+cluster://")


def test_queues_on_different_masters_are_served_by_one_worker(
    processes: Processes, client: redis.Redis
) -> None:
    names = ["default", "q1", "q2", "q3", "q4", "q5"]
    assert len({node_of(client, name) for name in names}) == 3, "the queues span every master"
    made = [jobs.add.options(queue=name).delay(index, 1) for index, name in enumerate(names)]
    later = [jobs.add.options(queue=name).after(0.3, index, 2) for index, name in enumerate(names)]
    output = output_of(processes.worker("--burst", *names))
    assert [job.result(timeout=1) for job in made] == [index + 1 for index in range(6)]
    assert all(job.status is JobStatus.SCHEDULED for job in later), output
    start_scheduling_worker(processes, *names)
    assert [job.result(timeout=15) for job in later] == [index + 2 for index in range(6)]


def test_map_stores_every_job_in_one_call_per_chunk(
    processes: Processes, client: redis.Redis
) -> None:
    made = jobs.add.options(queue="mapped").map(range(1500), range(1500))
    assert len(Queue("mapped")) == 1500
    output_of(processes.worker("--burst", "-c", "2", "mapped"), timeout=120)
    assert len(FinishedJobRegistry("mapped")) == 1500
    assert made[1499].result(timeout=1) == 2998


def test_result_waits_on_the_done_channel_across_masters(
    processes: Processes, client: redis.Redis
) -> None:
    start_scheduling_worker(processes, "q1", "q2", "q3")
    wait_for(lambda: subscribers(client, "q3") == 2, what="the worker and scheduler to listen")
    made = [jobs.sleep_for.options(queue=name).delay(0.2, name) for name in ("q1", "q2", "q3")]
    assert [job.result(timeout=10) for job in made] == [0.2, 0.2, 0.2]


def test_cancel_and_delete_touch_only_the_jobs_queue(client: redis.Redis) -> None:
    first = jobs.add.options(queue="q1").after(60, 1, 1)
    second = jobs.add.options(queue="q2").delay(2, 2)
    assert first.cancel() is True and first.status is JobStatus.CANCELED
    assert second.delete() is True
    assert not client.exists(second.key) and len(Queue("q2")) == 0


def test_check_finds_and_repairs_a_dangling_entry_on_any_master(
    processes: Processes, client: redis.Redis
) -> None:
    for name in ("q1", "q2", "q3"):
        jobs.add.options(queue=name).delay(1, 1)
    ghost = jobs.add.options(queue="q2").delay(2, 2)
    client.delete(ghost.key)
    found = processes.run("check", "--json")
    assert found.returncode == 1, found.stderr
    assert json.loads(found.stdout)["problem_counts"] == {"dangling_entry": 1}
    processes.run("check", "--repair")
    again = processes.run("check", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["clean"] is True, again.stdout


def test_scripts_lost_by_every_master_are_loaded_again_by_a_running_worker(
    processes: Processes, client: redis.Redis, cluster: Cluster
) -> None:
    start_scheduling_worker(processes)
    wait_for_holder(client)
    assert jobs.add.delay(1, 1).result(timeout=10) == 2
    for node in cluster.nodes:
        node.client().script_flush()
    assert jobs.add.after(0.1, 2, 2).result(timeout=10) == 4


def test_info_lists_every_queue_and_worker(processes: Processes, client: redis.Redis) -> None:
    for name in ("q1", "q2", "q3"):
        jobs.add.options(queue=name).delay(1, 1)
    start_scheduling_worker(processes, "q1", "q2", "q3")
    wait_for(
        lambda: all(len(FinishedJobRegistry(name)) == 1 for name in ("q1", "q2", "q3")),
        what="one job of each queue to finish",
    )
    view = json.loads(processes.run("info", "--json").stdout)
    finished = {queue["name"]: queue["finished"] for queue in view["queues"]}
    assert finished == {"q1": 1, "q2": 1, "q3": 1}
    assert len(view["workers"]) == 1


def test_fetch_finds_a_job_in_any_queue(client: redis.Redis) -> None:
    made = [jobs.add.options(queue=name).delay(1, 1) for name in ("q1", "q2", "q3")]
    assert [Job.fetch(job.id).queue for job in made] == ["q1", "q2", "q3"]
