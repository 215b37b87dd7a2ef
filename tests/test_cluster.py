"""A batch on a three-node Ray cluster on this machine (ray.cluster_utils.Cluster), one node
killed mid-run: the records must equal a clean run's, with nothing failed."""

from __future__ import annotations

import time

import pytest
from compare import assert_no_duplicates, clean_run, failures, records, run_with_fault

pytestmark = [pytest.mark.slow, pytest.mark.cluster]


@pytest.fixture
def cluster():
    """Head (1 CPU) and two worker nodes (2 CPUs each); the session's local Ray, if any, is put
    back afterwards for the tests that follow."""
    import ray
    from ray.cluster_utils import Cluster

    from pipeline.config import load_config
    from pipeline.runners.ray_batch import init_ray

    had_ray = ray.is_initialized()
    if had_ray:
        ray.shutdown()
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(2):
        c.add_node(num_cpus=2)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if had_ray:
            init_ray(load_config(overrides=["ray.num_cpus=2"]))


def test_node_killed_during_a_batch(fault_inputs, tmp_path, cluster, monkeypatch):
    import ray

    from pipeline.config import load_config

    settings = [f"ray.address={cluster.address}", "asr.window_s=5", "asr.workers=2", "asr.cpu_threads=1"]
    # the clean records, from the same cluster (Whisper in a Ray worker may differ by a
    # character from Whisper in this process: conftest.fault_clean_ray)
    clean = clean_run(fault_inputs, tmp_path / "clean", *(x for kv in settings for x in ("--set", kv)))
    monkeypatch.setenv("LIVEMOD_FAULTS", "asr.sleep=1.0")  # windows long enough to lose a node in
    config = load_config(overrides=settings)

    def remove_an_asr_node(batch):
        assert len([n for n in ray.nodes() if n["Alive"]]) == 3  # the driver joined the cluster
        asr_nodes = ray.get([a.node.remote() for a in batch.asr.actors], timeout=300)
        workers = {n.node_id: n for n in cluster.worker_nodes}  # the head node stays up

        def remove_node_of(actor: int) -> None:
            # as a machine that loses power, while that actor is transcribing a window
            cluster.remove_node(workers[asr_nodes[actor]], allow_graceful=False)

        return remove_node_of, {i for i, node in enumerate(asr_nodes) if node in workers}

    out = tmp_path / "out"
    batch, removed = run_with_fault(config, out, fault_inputs, remove_an_asr_node)
    assert removed and removed[0] >= 1, "the node was not removed while work was in flight"
    assert batch.retries >= 1  # the windows it had were tried again elsewhere
    assert failures(out) == []
    assert records(out) == records(clean)
    assert_no_duplicates(out)
    # the control store may take a while to declare the node dead (its actors came back sooner)
    deadline = time.monotonic() + 90
    while len([n for n in ray.nodes() if n["Alive"]]) != 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2
