"""Fixtures of the Python package's tests: the package's LLM and, to compare bits with, an
`invar serve` of the same model driven by the real openai client.

INVAR_BIN is the invar binary and INVAR_MODEL the model (tests/python/run.sh sets both). The
server is started as the server's own tests start it (tests/server/conftest.py, loaded here
under another name, since this file is `conftest` too).
"""

import importlib.util
import os
import struct

import openai
import pytest

import invar

_spec = importlib.util.spec_from_file_location(
    "server_conftest", os.path.join(os.path.dirname(__file__), "..", "server", "conftest.py"))
server_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(server_conftest)
MODEL_NAME = server_conftest.MODEL_NAME


def bits(x):
    """A float's bits (JSON and Python floats carry the engine's f32 values exactly)."""
    return None if x is None else struct.pack("<d", x)


def all_bits(xs):
    return [bits(x) for x in xs]


@pytest.fixture(scope="session")
def model_path():
    return os.environ["INVAR_MODEL"]


@pytest.fixture(scope="session")
def llm(model_path):
    return invar.LLM(model_path)


@pytest.fixture(scope="session")
def fast_llm(model_path):
    """The fast kernels: the negative control of every bitwise comparison (R8)."""
    return invar.LLM(model_path, kernels="fast")


@pytest.fixture(scope="session")
def server():
    s = server_conftest.InvarServer()
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="session")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0,
                         timeout=300)
