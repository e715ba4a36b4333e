import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from bot.signature import SignatureError, WebhookVerifier, sign
from tests.fakes.webhooks import message_event, signed

SECRET = "s3cr3t"
NOW = 1_747_574_400.0
BODY = b'{"type":"message"}'
# Independently computed: printf '{"type":"message"}' | openssl dgst -sha256 -hmac s3cr3t
BODY_SIGNATURE = "36b4008288e01ab784b858512263dfe4e79281e6bd3eb8b106ff34e330eb8f0e"


def verifier(*secrets: str, tolerance_s: float = 60, now: float = NOW) -> WebhookVerifier:
    return WebhookVerifier(secrets, tolerance_s, clock=lambda: now)


def reason(call, *args) -> str:
    with pytest.raises(SignatureError) as info:
        call(*args)
    return info.value.reason


def test_sign_is_hex_hmac_sha256_of_the_raw_body():
    assert sign(BODY, SECRET) == BODY_SIGNATURE


def test_valid_signature_is_accepted():
    raw, headers = signed(message_event(content="Привет"), SECRET)
    verifier(SECRET).verify_signature(raw, headers["Pachca-Signature"])


def test_upper_case_hex_and_surrounding_whitespace_are_accepted():
    verifier(SECRET).verify_signature(BODY, f"  {BODY_SIGNATURE.upper()}\n")


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_signature(header):
    assert reason(verifier(SECRET).verify_signature, BODY, header) == "missing_signature"


@pytest.mark.parametrize(
    "header",
    [
        "0" * 64,
        BODY_SIGNATURE[:-1] + ("0" if BODY_SIGNATURE[-1] != "0" else "1"),  # one digit off
        BODY_SIGNATURE[:-2],  # truncated
        BODY_SIGNATURE + "00",  # too long
        "sha256=" + BODY_SIGNATURE,  # Pachca sends bare hex, nothing else
        "g" * 64,  # right length, not hex
        "é" * 64,  # non-ASCII must not reach compare_digest (it raises TypeError there)
    ],
)
def test_wrong_signature(header):
    assert reason(verifier(SECRET).verify_signature, BODY, header) == "bad_signature"


def test_signature_with_another_secret_is_rejected():
    assert reason(verifier(SECRET).verify_signature, BODY, sign(BODY, "other")) == "bad_signature"


def test_tampered_body_is_rejected():
    raw, headers = signed(message_event(content="hello"), SECRET)
    tampered = raw.replace(b"hello", b"hellO")
    assert tampered != raw
    check = verifier(SECRET).verify_signature
    assert reason(check, tampered, headers["Pachca-Signature"]) == "bad_signature"


def test_rotation_accepts_old_and_new_secret_only():
    both = verifier("old-secret", "new-secret")
    both.verify_signature(BODY, sign(BODY, "old-secret"))
    both.verify_signature(BODY, sign(BODY, "new-secret"))
    assert reason(both.verify_signature, BODY, sign(BODY, "third")) == "bad_signature"


def test_no_secrets_rejects_everything():
    # Includes the HMAC keyed with "" that an empty configured secret would otherwise accept.
    for check in (verifier().verify_signature, verifier("").verify_signature):
        assert reason(check, BODY, sign(BODY, "")) == "bad_signature"
        assert reason(check, BODY, sign(BODY, SECRET)) == "bad_signature"


def test_a_bare_string_is_not_taken_as_a_list_of_one_char_secrets():
    with pytest.raises(TypeError):
        WebhookVerifier("abc", 60)


@pytest.mark.parametrize("tolerance", [-1, math.nan, math.inf])
def test_tolerance_must_be_finite_and_non_negative(tolerance):
    with pytest.raises(ValueError):
        WebhookVerifier([SECRET], tolerance)


def test_secrets_stay_out_of_reprs_and_messages():
    check = verifier("super-secret-value")
    assert "super-secret-value" not in repr(check)
    with pytest.raises(SignatureError) as info:
        check.verify_signature(BODY, sign(BODY, "x"))
    assert str(info.value) == "bad_signature"
    assert "super-secret-value" not in repr(info.value)


@pytest.mark.parametrize("offset", [0, 1, -1, 59.5, -59.5, 60, -60])
def test_timestamp_within_tolerance_is_accepted(offset):
    verifier(SECRET).verify_timestamp(NOW + offset)
    verifier(SECRET).verify_timestamp(int(NOW) + int(offset))


@pytest.mark.parametrize("offset", [-61, 61, -60.001, 60.001, -3600, 10**6])
def test_stale_and_future_timestamps_are_rejected(offset):
    assert reason(verifier(SECRET).verify_timestamp, NOW + offset) == "stale_timestamp"


def test_clock_is_read_on_every_check():
    now = [NOW]
    check = WebhookVerifier([SECRET], 60, clock=lambda: now[0])
    check.verify_timestamp(int(NOW))
    now[0] += 61
    assert reason(check.verify_timestamp, int(NOW)) == "stale_timestamp"


def test_a_body_from_the_fake_carries_a_current_timestamp():
    body = message_event()
    WebhookVerifier([SECRET], 60).verify_timestamp(body["webhook_timestamp"])


def test_huge_timestamp_is_stale_not_a_crash():
    assert reason(verifier(SECRET).verify_timestamp, 10**400) == "stale_timestamp"


@pytest.mark.parametrize(
    "value", [None, "1747574400", True, False, [NOW], {"t": NOW}, math.nan, math.inf]
)
def test_non_numeric_timestamp_is_missing(value):
    assert reason(verifier(SECRET).verify_timestamp, value) == "missing_timestamp"


@given(body=st.binary(max_size=512), secret=st.text(min_size=1), other=st.text(min_size=1))
def test_property_a_body_signed_with_another_secret_is_never_accepted(body, secret, other):
    # HMAC pads short keys with zero bytes, so "k" and "k\0" are the same key by design.
    assume(secret.encode().rstrip(b"\0") != other.encode().rstrip(b"\0"))
    check = WebhookVerifier([secret], 60)
    check.verify_signature(body, sign(body, secret))
    with pytest.raises(SignatureError):
        check.verify_signature(body, sign(body, other))


@given(body=st.binary(max_size=256), other=st.binary(max_size=256), secret=st.text(min_size=1))
def test_property_a_signature_does_not_fit_another_body(body, other, secret):
    assume(body != other)
    with pytest.raises(SignatureError):
        WebhookVerifier([secret], 60).verify_signature(other, sign(body, secret))
