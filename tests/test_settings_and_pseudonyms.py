"""Settings validation, input-folder parsing, and the pseudonym contract."""

from __future__ import annotations

import re

import pytest

from sendit_ops.core.errors import ConfigError, ProviderError
from sendit_ops.core.settings import load_settings, parse_input_folders
from sendit_ops.pseudonyms.providers import (
    LocalKeyedProvider,
    StudyIdentity,
    build_request,
    parse_response,
    sanitize_id,
)

pytestmark = pytest.mark.unit

KEY = b"0123456789abcdef0123456789abcdef"
IDENT = StudyIdentity(
    "MRN100234",
    "ACC10001",
    entity_timestamp="1971-03-04T00:00:00Z",
    item_timestamp="2024-01-15T08:30:00Z",
)


def test_defaults_and_sendit_names():
    s = load_settings(
        {
            "ANONYMIZE_RESTFUL": True,
            "GOOGLE_STORAGE_COLLECTION": "IRB12345",
            "modality_allowlist": "ct, mr",
        }
    )
    assert s.pseudonym_provider == "dasher"
    assert s.study_name == "irb12345"
    assert s.modality_allowlist == ("CT", "MR")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as err:
        load_settings(
            {
                "gzip_level": 12,
                "send_to_google": "maybe",
                "colection": "x",
                "pseudonym_provider": "oracle",
            }
        )
    message = str(err.value)
    for part in (
        "gzip_level",
        "send_to_google",
        "unknown setting 'colection'",
        "pseudonym_provider",
    ):
        assert part in message


def test_google_needs_bucket_and_project():
    with pytest.raises(ConfigError, match="google_cloud_storage"):
        load_settings({"send_to_google": True, "google_project_name": "p"})


def test_google_retry_seconds_is_the_libraries_own_unless_set():
    """Unset (or null): the Google libraries keep their own retry deadlines; a number of
    seconds replaces them; anything else is refused with the setting's name."""
    from sendit_ops.airflow.google_target import retry_keywords

    assert load_settings({}).google_retry_seconds is None
    assert load_settings({"google_retry_seconds": None}).google_retry_seconds is None
    assert retry_keywords(None) == ({}, {})
    assert load_settings({"google_retry_seconds": "15"}).google_retry_seconds == 15
    on_storage, on_bigquery = retry_keywords(15)
    assert on_storage["retry"].timeout == 15 and on_bigquery["retry"].timeout == 15
    for bad, words in (
        (0, "must be between 1 and 3600 (got 0)"),
        (7200, "must be between 1 and 3600 (got 7200)"),
        ("soon", "must be a whole number (got 'soon')"),
    ):
        with pytest.raises(ConfigError, match=re.escape(f"'google_retry_seconds' {words}")):
            load_settings({"google_retry_seconds": bad})


def test_input_folders_shapes():
    folders = parse_input_folders(
        ["/data/1_0", {"path": "/data/x-y", "schedule": "@hourly", "settings": {"chunk_size": 5}}]
    )
    assert [f.dag_id for f in folders] == ["sendit_1_0", "sendit_x_y"]
    assert folders[1].schedule == "@hourly"
    with pytest.raises(ConfigError, match="share the name"):
        parse_input_folders(["/a/data", "/b/data"])
    with pytest.raises(ConfigError, match="needs a 'path'"):
        parse_input_folders([{"name": "x"}])


def test_request_has_dasher_shape():
    body = build_request([IDENT])
    entity = body["identifiers"][0]
    assert entity["id_source"] == "Stanford MRN" and entity["items"][0]["id"] == "ACC10001"
    assert sanitize_id("MRN-100 234") == "MRN100234"
    with pytest.raises(ProviderError):
        build_request([StudyIdentity("", "A1")])


def test_local_provider_is_stable_and_keyed():
    one = parse_response(LocalKeyedProvider(KEY).lookup("irb1", build_request([IDENT])), IDENT)
    two = parse_response(LocalKeyedProvider(KEY).lookup("irb1", build_request([IDENT])), IDENT)
    other = parse_response(
        LocalKeyedProvider(KEY[::-1]).lookup("irb1", build_request([IDENT])), IDENT
    )
    assert one == two
    assert one.entity_suid != other.entity_suid
    assert 7 <= abs(one.jitter) <= 37
    assert "MRN" not in one.entity_suid.upper()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"results": None},
        {"results": [{"id": "MRN100234", "suid": "x", "items": []}]},
        {
            "results": [
                {
                    "id": "MRN100234",
                    "suid": "p1",
                    "jitter": 3,
                    "items": [{"id": "ACC10001", "suid": "", "jitter": 3}],
                }
            ]
        },
        {
            "results": [
                {
                    "id": "MRN100234",
                    "suid": "p1",
                    "items": [{"id": "ACC10001", "suid": "s1", "jitter": "soon"}],
                }
            ]
        },
    ],
)
def test_malformed_or_partial_answers_are_refused(body):
    with pytest.raises(ProviderError):
        parse_response(body, IDENT)


@pytest.mark.parametrize(
    ("count", "size", "parallel", "expected"),
    [
        (0, 10, 2, []),
        (40, 25, 2, [20, 20]),  # a small run: one wave of two equal chunks
        (41, 25, 2, [21, 20]),
        (3, 25, 2, [2, 1]),
        (1, 25, 2, [1]),
        (120, 25, 2, [24, 24, 24, 24, 24]),  # a big run: chunks of at most `size`
        (10, 1, 8, [1] * 10),
        (40, 10, 1, [10, 10, 10, 10]),
    ],
)
def test_chunks_are_balanced_and_bounded(count, size, parallel, expected):
    from sendit_ops.core.discovery import chunk

    keys = [f"k{i}" for i in range(count)]
    chunks = chunk(keys, size, parallel)
    assert [len(c) for c in chunks] == expected
    assert [k for c in chunks for k in c] == keys  # every batch once, order kept
