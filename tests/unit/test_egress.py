"""sandbox.egress entries, and the proxy's count of calls over whatever a tunnel carries."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlflow_validator.egress.destinations import BadDestination, Destination, parse_destination
from mlflow_validator.egress.proxy import Exchanges
from mlflow_validator.errors import UsageError
from mlflow_validator.isolation import HIDDEN, hide_secrets, secrets_of
from mlflow_validator.settings.resolve import resolve_options


@given(st.lists(st.tuples(st.booleans(), st.integers(1, 2000)), max_size=30))
def test_counting_calls_never_raises_whatever_a_tunnel_carries(exchanges_seen):
    """What goes through a tunnel is the model's: any bytes, in any split."""
    exchanges = Exchanges()
    for up, size in exchanges_seen:
        if up:
            exchanges.up(bytes([0x16, 3, 3]) + bytes(size))
        else:
            exchanges.down()
    assert exchanges.calls <= sum(1 for up, _ in exchanges_seen if up)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("llm.example:8080", Destination("llm.example", 8080)),
        ("https://LLM.Example./v1", Destination("llm.example", 443)),
        ("http://10.0.0.1/v1", Destination("10.0.0.1", 80)),
        ("[::1]:11434", Destination("::1", 11434)),
    ],
)
def test_an_entry_is_a_host_and_a_port(entry, expected):
    assert parse_destination(entry) == expected


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("llm.example", "names no host and port"),
        ("ftp://llm.example", "only http:// and https://"),
        ("https://user:key@llm.example", "holds credentials"),
        ("llm.example:99999", "out of range"),
        ("bad host:1", "is not a host name"),
    ],
)
def test_an_entry_that_names_no_destination_is_refused_with_why(entry, said):
    with pytest.raises(BadDestination, match=said):
        parse_destination(entry)


def test_an_entry_may_take_a_job_variable_and_a_missing_one_is_a_usage_error(tmp_path):
    flags = {"model_uri": "models:/m/1", "sandbox.egress": "${LLM_ENDPOINT} other.example:443"}
    options = resolve_options(flags, {"LLM_ENDPOINT": "https://llm.example/v1"}, tmp_path)
    assert options.egress == (Destination("llm.example", 443), Destination("other.example", 443))
    with pytest.raises(UsageError, match="names LLM_ENDPOINT, which the environment does not set"):
        resolve_options(flags, {}, tmp_path)


def test_application_data_split_into_small_records_is_still_a_call():
    """A model that writes its request 60 bytes at a time still sends more than TLS's own messages."""
    exchanges = Exchanges()
    exchanges.up(bytes([0x16, 3, 1, 0, 10]) + bytes(10))  # ClientHello
    exchanges.down()
    for _ in range(3):  # three requests, each in four small records, each answered
        for _ in range(4):
            exchanges.up(bytes([0x17, 3, 3, 0, 60]) + bytes(60))
        exchanges.down()
    assert exchanges.calls == 3


@pytest.mark.parametrize("entry", ["[::1:443", "[fe80::1%eth0]:443"])
def test_a_malformed_or_zoned_address_is_no_destination(entry):
    with pytest.raises(BadDestination):
        parse_destination(entry)


def test_a_credentials_pieces_are_hidden_wherever_an_output_cut_it_and_an_endpoint_only_whole():
    key = "sk-proj-Q9rT2vXb7LmW1yHc6JfA3gUe5iOo0BnVxC"
    secrets = secrets_of({"OPENAI_API_KEY": key, "LLM_ENDPOINT": "https://llm.example/v1", "MODE": "fast"})
    for leaked in (key, f"…{key[:20]}", f"invalid k...{key[-23:]}", key[:12].upper()):
        assert key[:8] not in hide_secrets(leaked, secrets).lower(), leaked
        assert key[-8:] not in hide_secrets(leaked, secrets).lower(), leaked
    said = "calls https://llm.example/v1, not https://other.example, mode fast"
    assert hide_secrets(said, secrets) == f"calls {HIDDEN}, not https://other.example, mode fast"
