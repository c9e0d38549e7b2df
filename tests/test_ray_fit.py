"""The Ray engine's reservations, sized to the cluster (fit_job): on every node, one actor
of each type and one read or decode task fit together, so no part of a job waits for ever;
a cluster where nothing can run is refused with what the job needs. No Ray needed."""

from __future__ import annotations

import pytest

from server.collection.files import RunError
from server.collection.ray_engine import CPU_ACTOR_CPUS, TASK_CPUS, fit_job


@pytest.mark.parametrize("types", [1, 2, 3, 5])
@pytest.mark.parametrize(
    "nodes",
    [
        [{"CPU": 1.0}],
        [{"CPU": 2.0}],
        [{"CPU": 2.0}, {"CPU": 2.0}],
        [{"CPU": 0.0}, {"CPU": 3.0}],  # a head kept free of work
        [{"CPU": 64.0}, {"CPU": 4.0}],
    ],
)
def test_every_node_holds_its_actors_and_a_task(nodes: list[dict], types: int) -> None:
    fit = fit_job(nodes, types)
    working = [node for node in nodes if node["CPU"] > 0]
    assert fit.actors == len(working)
    assert fit.actor_gpus == 0
    assert 0 < fit.actor_cpus <= CPU_ACTOR_CPUS and 0 < fit.task_cpus <= TASK_CPUS
    for node in working:
        assert types * fit.actor_cpus + fit.task_cpus <= node["CPU"]


def test_two_cpus_and_five_types() -> None:
    # Before: five actors of 0.5 CPU; the first four took both CPUs and the read and decode
    # tasks (1 CPU) never ran.
    fit = fit_job([{"CPU": 2.0}], 5)
    assert (fit.actors, fit.actor_cpus, fit.task_cpus) == (1, 0.2, 1.0)
    assert fit_job([{"CPU": 16.0}], 5).actor_cpus == CPU_ACTOR_CPUS  # room: as before


def test_types_share_each_gpu() -> None:
    nodes = [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 4.0}]
    fit = fit_job(nodes, 3)
    assert fit.actors == 2  # one per GPU and type
    assert fit.actor_gpus * 3 <= 1 and fit.actor_gpus > 0.33
    # Each GPU's three actors and a task fit in the 4 CPUs beside it.
    assert 3 * fit.actor_cpus + fit.task_cpus <= 4


def test_a_cluster_without_cpus_is_refused_with_what_the_job_needs() -> None:
    with pytest.raises(RunError) as refused:
        fit_job([{"CPU": 0.0, "memory": 1e9}], 5)
    message = str(refused.value)
    assert "no CPU" in message and "5 model actors" in message
    with pytest.raises(RunError):
        fit_job([], 1)
