"""The seal key's release policy: content, Key Vault's documented grammar, and the encoding the API expects."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from typing import Any

import jsonschema
import pytest

from components.config import load_settings
from components.release_policy import (
    CONTENT_TYPE,
    ExpectedEnclave,
    encoded_policy,
    expected_enclave,
    policy_json,
    release_policy,
)
from harness import encode_config

MAA = "https://sharedweu.weu.attest.azure.net"
SIGNER = "c0ffee" + "0" * 58
ENCLAVE = ExpectedEnclave(attestation_provider=MAA, signer_id=SIGNER, product_id=1, min_security_version=3)

# JSON Schema of Microsoft's "Azure Key Vault secure key release policy grammar" (learn.microsoft.com/azure/key-vault/
# keys/policy-grammar; source MicrosoftDocs/azure-security-docs articles/key-vault/includes/
# key-management-policy-grammar.md): a policy is {version "1.0.0", anyOf: [authority, ...]}; an authority names its
# issuer and holds exactly one of allOf / anyOf (never both); a condition is a claim condition or a nested allOf /
# anyOf; a claim condition is {claim, <one operator>: value}, the operators are the grammar's seven, and a value is a
# JSON string, number or boolean ("objects aren't allowed as values"); every list holds at least one item. Key casing
# follows the document's examples (`anyOf`, `allOf`), which the EBNF writes in lower case.
_OPERATORS = ("equals", "notEquals", "less", "lessOrEquals", "greater", "greaterOrEquals", "exists")
_CONDITION_LIST = {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/condition"}}
POLICY_GRAMMAR: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "anyOf"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": "1.0.0"},
        "anyOf": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/authority"}},
    },
    "$defs": {
        "value": {"type": ["string", "number", "boolean"]},
        "claim_condition": {
            "type": "object",
            "required": ["claim"],
            "minProperties": 2,
            "maxProperties": 2,
            "additionalProperties": False,
            "properties": {
                "claim": {"type": "string", "minLength": 1},
                **{operator: {"$ref": "#/$defs/value"} for operator in _OPERATORS},
            },
        },
        "anyof_condition": {
            "type": "object",
            "required": ["anyOf"],
            "additionalProperties": False,
            "properties": {"anyOf": _CONDITION_LIST},
        },
        "allof_condition": {
            "type": "object",
            "required": ["allOf"],
            "additionalProperties": False,
            "properties": {"allOf": _CONDITION_LIST},
        },
        "condition": {
            "oneOf": [
                {"$ref": "#/$defs/claim_condition"},
                {"$ref": "#/$defs/anyof_condition"},
                {"$ref": "#/$defs/allof_condition"},
            ]
        },
        "authority": {
            "type": "object",
            "required": ["authority"],
            "additionalProperties": False,
            "properties": {
                "authority": {"type": "string", "minLength": 1},
                "allOf": _CONDITION_LIST,
                "anyOf": _CONDITION_LIST,
            },
            "oneOf": [{"required": ["allOf"]}, {"required": ["anyOf"]}],
        },
    },
}


def grammar_errors(policy: Any) -> list[str]:
    validator = jsonschema.Draft202012Validator(POLICY_GRAMMAR)
    return [error.message for error in validator.iter_errors(policy)]


def decoded(data: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def test_grammar_schema_is_a_valid_schema_and_not_vacuous() -> None:
    jsonschema.Draft202012Validator.check_schema(POLICY_GRAMMAR)
    good = {"version": "1.0.0", "anyOf": [{"authority": MAA, "allOf": [{"claim": "c", "equals": 1}]}]}
    assert grammar_errors(good) == []
    broken = [
        {"anyOf": good["anyOf"]},  # no version
        {**good, "version": "2.0.0"},
        {**good, "anyOf": []},
        {**good, "anyOf": [{"authority": MAA}]},  # no conditions
        {
            **good,
            "anyOf": [
                {"authority": MAA, "allOf": [{"claim": "c", "equals": 1}], "anyOf": [{"claim": "c", "equals": 1}]}
            ],
        },
        {**good, "anyOf": [{"authority": MAA, "allOf": [{"claim": "c", "equals": {"an": "object"}}]}]},
        {**good, "anyOf": [{"authority": MAA, "allOf": [{"claim": "c", "matches": "x"}]}]},  # no such operator
        {**good, "anyOf": [{"authority": MAA, "allOf": [{"claim": "c", "equals": 1, "greater": 0}]}]},
        {**good, "anyOf": [{"authority": MAA, "allOf": [{"claim": "c", "equals": [1]}]}]},  # arrays aren't values
    ]
    for policy in broken:
        assert grammar_errors(policy), policy


def test_policy_follows_the_grammar() -> None:
    assert grammar_errors(release_policy(ENCLAVE)) == []


def test_policy_pins_signer_product_minimum_version_and_no_debug() -> None:
    assert release_policy(ENCLAVE) == {
        "version": "1.0.0",
        "anyOf": [
            {
                "authority": "https://sharedweu.weu.attest.azure.net",
                "allOf": [
                    {"claim": "x-ms-sgx-mrsigner", "equals": SIGNER},
                    {"claim": "x-ms-sgx-product-id", "equals": 1},
                    {"claim": "x-ms-sgx-svn", "greaterOrEquals": 3},
                    {"claim": "x-ms-sgx-is-debuggable", "equals": False},
                ],
            }
        ],
    }


def test_claim_values_have_the_types_maa_writes() -> None:
    # MAA's SGX token carries product id and svn as JSON numbers and is-debuggable as a boolean: a string "1" would
    # never equal them (MicrosoftDocs azure-docs articles/attestation/attestation-token-examples.md).
    conditions = {condition["claim"]: condition for condition in release_policy(ENCLAVE)["anyOf"][0]["allOf"]}
    assert type(conditions["x-ms-sgx-product-id"]["equals"]) is int
    assert type(conditions["x-ms-sgx-svn"]["greaterOrEquals"]) is int
    assert conditions["x-ms-sgx-is-debuggable"]["equals"] is False


def test_encoding_is_unpadded_base64url_of_the_json() -> None:
    policy = release_policy(ENCLAVE)
    data = encoded_policy(policy)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", data), "base64url alphabet, no padding"
    assert decoded(data) == policy
    assert base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode() == policy_json(policy)
    assert CONTENT_TYPE == "application/json; charset=utf-8"


def test_encoding_is_stable_run_to_run() -> None:
    # The key's input must not change between runs for the same identity, or every preview shows a diff.
    assert encoded_policy(release_policy(ENCLAVE)) == encoded_policy(release_policy(dataclasses.replace(ENCLAVE)))


@pytest.mark.parametrize(
    ("change", "claim", "operator", "value"),
    [
        ({"signer_id": "d" * 64}, "x-ms-sgx-mrsigner", "equals", "d" * 64),
        ({"min_security_version": 4}, "x-ms-sgx-svn", "greaterOrEquals", 4),
        ({"product_id": 7}, "x-ms-sgx-product-id", "equals", 7),
    ],
)
def test_a_new_identity_changes_exactly_its_condition(
    change: dict[str, Any], claim: str, operator: str, value: Any
) -> None:
    before = release_policy(ENCLAVE)["anyOf"][0]["allOf"]
    after = release_policy(dataclasses.replace(ENCLAVE, **change))["anyOf"][0]["allOf"]
    differing = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert differing == [(next(c for c in before if c["claim"] == claim), {"claim": claim, operator: value})]
    assert encoded_policy(release_policy(dataclasses.replace(ENCLAVE, **change))) != encoded_policy(
        release_policy(ENCLAVE)
    )


@pytest.mark.parametrize(
    "change",
    [
        {"signer_id": SIGNER.upper()},
        {"signer_id": SIGNER[:-1]},
        {"product_id": 65536},
        {"min_security_version": -1},
        {"min_security_version": True},
        # Builds before securityVersion 3 let the host replace the enclave's configuration: never released to.
        {"min_security_version": 2},
        {"attestation_provider": "http://sharedweu.weu.attest.azure.net"},
        {"attestation_provider": "https://sharedweu.weu.attest.azure.net/"},
        {"attestation_provider": "https://sharedweu.weu.attest.azure.net/certs"},
    ],
)
def test_a_malformed_identity_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid expected enclave"):
        dataclasses.replace(ENCLAVE, **change)


def test_the_policy_never_releases_to_a_build_before_security_version_3() -> None:
    with pytest.raises(ValueError, match="min_security_version is not an integer from 3 to 65535"):
        dataclasses.replace(ENCLAVE, min_security_version=2)
    [condition] = [c for c in release_policy(ENCLAVE)["anyOf"][0]["allOf"] if c["claim"] == "x-ms-sgx-svn"]
    assert condition == {"claim": "x-ms-sgx-svn", "greaterOrEquals": 3}


def test_expected_enclave_from_stack_settings() -> None:
    raw = {
        "confidential-vault:environment": "dev",
        "confidential-vault:domain": "dev.vault.example.org",
        "confidential-vault:owner": "platform-team",
        "confidential-vault:acme": {"email": "ops@example.org"},
        "confidential-vault:cluster": {"location": "northeurope"},
        "confidential-vault:vault": {
            "image": {"repository": "registry.example.org/ego-openbao", "tag": "2.6.2-ego1.9.0"},
            "enclave": {"signerId": SIGNER, "productId": 4, "securityVersion": 9},
        },
    }
    enclave = expected_enclave(load_settings(encode_config(raw)))
    # No provider configured: the regional shared provider of the cluster's location, as clients use.
    assert enclave == ExpectedEnclave(
        attestation_provider="https://sharedneu.neu.attest.azure.net",
        signer_id=SIGNER,
        product_id=4,
        min_security_version=9,
    )
    raw["confidential-vault:vault"]["attestation"] = {"providerUrl": "https://mine.weu.attest.azure.net"}
    assert (
        expected_enclave(load_settings(encode_config(raw))).attestation_provider == "https://mine.weu.attest.azure.net"
    )
    del raw["confidential-vault:vault"]["enclave"]["securityVersion"]
    with pytest.raises(ValueError, match="securityVersion"):
        expected_enclave(load_settings(encode_config(raw)))
