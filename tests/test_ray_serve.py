"""eqsdk on Ray Serve: a local Ray instance (2 CPUs), the application on two replicas behind Ray's
own HTTP proxy on a free loopback port, spoken to over HTTP (urllib).

Concurrent renders equal the library's, all answered, in @serve.batch batches larger than one;
an id made on one replica composes on the other; errors are eqsdk serve's; the builder's
arguments are checked, and the documented `serve deploy` config is valid.
"""
import io
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray.serve", reason='needs ray[serve]: pip install "eqsdk[ray]"')

import eqsdk  # noqa: E402
from eqsdk.errors import InputError  # noqa: E402
from eqsdk.ray_serve import app, build  # noqa: E402
from tests.test_server import call, case, error  # noqa: E402

CLIENTS = 32
CONFIG = Path(__file__).resolve().parents[1] / "examples" / "ray_serve.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url():
    """mnist on 2 replicas of 1 CPU, batches of up to 32 waiting up to 50 ms to fill."""
    import ray
    from ray import serve

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build(["mnist"], num_replicas=2, max_batch=32, max_wait_ms=50), name="eqsdk",
                  route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def image(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body))).astype(int)


def replica_stats(url: str, tries: int = 20) -> dict[str, dict]:
    """/v1/stats of each replica that answered one of `tries` requests (Ray picks the replica)."""
    seen = {}
    for _ in range(tries):
        status, _, body = call(f"{url}/v1/stats")
        assert status == 200
        stats = json.loads(body)
        seen[stats["replica"]] = stats
    return seen


@pytest.mark.slow
def test_concurrent_renders_equal_the_library_in_batches(url, mnist):
    cases = {k: case(k) for k in (1, 2, 3)}
    expected = {}
    for k, files in cases.items():  # the library's render_arrays, one case at a time
        x = {f: eqsdk.images.to_array(Image.open(io.BytesIO(v)), mnist.image_size, f)
             for f, v in files.items()}
        out = mnist.render_arrays(*(x[f][None] for f in ("char", "anim_start", "anim_end", "bg")))
        expected[k] = eqsdk.images.to_uint8(out)[0].astype(int)
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(lambda i: call(f"{url}/v1/render", cases[i % 3 + 1]), range(CLIENTS)))
    assert [status for status, _, _ in answers] == [200] * CLIENTS  # nothing dropped
    for i, (_, headers, body) in enumerate(answers):
        assert headers["content-type"] == "image/png" and headers["x-eqsdk-model"] == "mnist"
        assert np.abs(image(body) - expected[i % 3 + 1]).max() <= 1  # batched ORT: one level at most
    renders = [s["models"]["mnist"]["render"] for s in replica_stats(url).values()]
    assert max(r["largest"] for r in renders) > 1, renders  # @serve.batch formed batches
    assert sum(r["items"] for r in renders) <= CLIENTS


@pytest.mark.slow
def test_an_id_composes_on_any_replica(url, mnist):
    """Encodings live in the application's store: with a per-replica cache, about half of
    these composes would meet an id from the other replica (404)."""
    files = case(2)
    ims = {k: Image.open(io.BytesIO(v)) for k, v in files.items()}
    expected = mnist.compose(mnist.encode_character(ims["char"]),
                             mnist.encode_motion(ims["anim_start"], ims["anim_end"]),
                             mnist.encode_background(ims["bg"])).astype(int)

    def encode_and_compose(_):
        ids = {}
        for kind, fields in (("character", {"image": files["char"]}), ("background", {"image": files["bg"]}),
                             ("motion", {"anim_start": files["anim_start"], "anim_end": files["anim_end"]})):
            status, _, body = call(f"{url}/v1/encode/{kind}", fields)
            assert status == 200, body
            ids[kind] = json.loads(body)["id"]
        return call(f"{url}/v1/compose", json_body=ids)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(encode_and_compose, range(8)))
    assert [status for status, _, _ in answers] == [200] * 8, [body[:200] for _, _, body in answers]
    for _, _, body in answers:
        assert np.abs(image(body) - expected).max() <= 1
    stats = replica_stats(url)
    assert len(stats) == 2  # both replicas served
    assert all(s["cache"]["entries"] >= 24 for s in stats.values())  # one store, seen from both


@pytest.mark.slow
def test_a_lost_store_means_unknown_ids_then_encoding_again(url):
    """The store gone (its replica stopped): a new, empty one takes its place; old ids get 404."""
    import ray

    files = case(1)

    def encode() -> dict:
        return {kind: json.loads(call(f"{url}/v1/encode/{kind}", fields)[2])["id"] for kind, fields in (
            ("character", {"image": files["char"]}), ("background", {"image": files["bg"]}),
            ("motion", {"anim_start": files["anim_start"], "anim_end": files["anim_end"]}))}

    ids = encode()
    ray.kill(ray.get_actor("eqsdk-encodings-eqsdk", namespace="eqsdk"))
    status, message = error(*call(f"{url}/v1/compose", json_body=ids)[::2])
    assert status == 404 and "no such encoding" in message
    assert call(f"{url}/v1/compose", json_body=encode())[0] == 200


@pytest.mark.slow
def test_errors_are_eqsdk_serves(url):
    status, message = error(*call(f"{url}/v1/compose", json_body={"character": "nosuchid", "motion": "x",
                                                                  "background": "y"})[::2])
    assert status == 404 and message.startswith("character id 'nosuchid': no such encoding")
    files = {**case(1), "char": b"not an image"}
    status, message = error(*call(f"{url}/v1/render", files)[::2])
    assert status == 400 and "is not an image Pillow can read" in message
    status, _, body = call(f"{url}/v1/models")
    assert status == 200 and json.loads(body)["default"] == "mnist"


def test_the_builder_checks_its_arguments():
    built = app({"models": "mnist,sprites", "num_replicas": "3", "max_wait_ms": "5", "max_in_flight": 16})
    d = built._bound_deployment
    assert d.num_replicas == 3 and d.max_ongoing_requests == 16
    models, backend, limits, max_batch, max_wait_ms = d.init_args
    assert models == ["mnist", "sprites"] and limits.max_in_flight == 16 and max_wait_ms == 5.0
    with pytest.raises(InputError, match=r"unknown argument 'replicas'; expected some of models, "):
        app({"replicas": 2})
    with pytest.raises(InputError, match=r"num_replicas='two'; expected an integer"):
        app({"num_replicas": "two"})
    with pytest.raises(InputError, match=r"models=3; expected a list of model names"):
        app({"models": 3})
    with pytest.raises(InputError, match=r"max_batch: got 0; expected an integer from 1 to 1024"):
        app({"max_batch": 0})
    with pytest.raises(InputError, match=r"limits: max_in_flight -1; expected a positive number"):
        app({"max_in_flight": "-1"})


def test_the_deploy_config_is_valid():
    """examples/ray_serve.yaml parses as Ray's own `serve deploy` schema and its args build the app."""
    import yaml
    from ray.serve.schema import ServeDeploySchema

    config = ServeDeploySchema.model_validate(yaml.safe_load(CONFIG.read_text()))
    (application,) = config.applications
    assert application.import_path == "eqsdk.ray_serve:app" and application.route_prefix == "/"
    d = app(application.args)._bound_deployment
    assert d.num_replicas == 4 and d.init_args[0] == ["mnist", "sprites"]


def test_a_failing_batch_runs_its_items_alone():
    """run_jobs groups a Ray batch by operation; when a group's call fails, each item runs alone,
    so the error reaches its own request and the others get their results."""
    from eqsdk.ray_serve import ServeBatched, run_jobs

    def doubled(items):
        if "bad" in items:
            raise InputError("bad item")
        return [2 * x for x in items]

    double = ServeBatched(doubled, "double", None)
    negate = ServeBatched(lambda xs: [-x for x in xs], "negate", None)
    out = run_jobs([(double, 1), (negate, 5), (double, "bad"), (double, 3), (negate, 7)])
    assert [o[1] for o in out if o[0]] == [2, -5, 6, -7]
    assert not out[2][0] and isinstance(out[2][1], InputError)
    assert double.stats()["sizes"] == {"3": 1} and negate.stats()["sizes"] == {"2": 1}
