"""The ``parameters`` step: the request against STS's service model (docs/reference/sts.md §1.2).

Every constraint that fails is listed, as AWS does ("2 validation errors detected:
...; ..."), in an :class:`~.errors.InvalidParameterValue`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from ...constants import MAX_ROLE_SESSION_DURATION_S, MIN_SESSION_DURATION_S
from ..policy.grammar import DOCUMENT_CHARS, DOCUMENT_CHARS_PATTERN
from .errors import InvalidParameterValue, InvalidRoleArn, StsError

__all__ = ["MAX_POLICY_ARNS", "MAX_TOKEN_LENGTH", "policy_arns", "validate_parameters"]

MAX_TOKEN_LENGTH = 20000
MAX_POLICY_ARNS = 10


@functools.cache
def _arn_chars() -> re.Pattern[str]:
    # Compiled on first use: a class over the whole of Unicode takes about 5 ms to build.
    return re.compile("[\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]+")


_ARN_PATTERN = r"[\u0009\u000A\u000D\u0020-\u007E\u0085\u00A0-\uD7FF\uE000-\uFFFD\u10000-\u10FFFF]+"
_SESSION_NAME = re.compile(r"[\w+=,.@-]*", re.ASCII)
_ROLE_ARN = re.compile(
    r"arn:(aws|aws-cn|aws-us-gov):iam::(\d{12}):role/(?:[\x21-\x7e]*/)?([\w+=,.@-]{1,64})", re.ASCII
)


def _validation_error(problems: list[str], explanation: str | None = None) -> StsError:
    n = len(problems)
    head = f"{n} validation error{'s' if n > 1 else ''} detected: "
    return InvalidParameterValue(head + "; ".join(problems), explanation, step="parameters")


def _string_problems(
    member: str,
    value: str | None,
    *,
    required: bool,
    min_len: int,
    max_len: int,
    pattern: re.Pattern[str] | None = None,
    pattern_text: str = "",
    sensitive: bool = False,
) -> list[str]:
    if value is None:
        return (
            [f"Value null at '{member}' failed to satisfy constraint: Member must not be null"]
            if required
            else []
        )
    # AWS leaves the value of a sensitive member out of the message.
    shown = f"Value at '{member}'" if sensitive else f"Value '{value}' at '{member}'"
    out = []
    if pattern is not None and value and not pattern.fullmatch(value):
        out.append(
            f"{shown} failed to satisfy constraint: Member must satisfy regular expression "
            f"pattern: {pattern_text}"
        )
    if len(value) < min_len:
        out.append(
            f"{shown} failed to satisfy constraint: Member must have length greater than or "
            f"equal to {min_len}"
        )
    if len(value) > max_len:
        out.append(
            f"{shown} failed to satisfy constraint: Member must have length less than or "
            f"equal to {max_len}"
        )
    return out


def _arn_problems(member: str, value: str | None, *, required: bool) -> list[str]:
    """``_string_problems`` for a member of the model's ``arnType`` (RoleArn, PolicyArns)."""
    return _string_problems(
        member,
        value,
        required=required,
        min_len=20,
        max_len=2048,
        pattern=_arn_chars(),
        pattern_text=_ARN_PATTERN,
    )


def policy_arns(params: Mapping[str, str]) -> list[str]:
    """The request's ``PolicyArns.member.<n>.arn`` values, in the order of ``n``."""
    found: dict[int, str] = {}
    for name, value in params.items():
        m = re.fullmatch(r"PolicyArns\.member\.(\d{1,4})\.arn", name)
        if m:
            found[int(m.group(1))] = value
    return [found[i] for i in sorted(found)]


def validate_parameters(params: Mapping[str, str]) -> tuple[str, str, str, int | None]:
    """Check the request against the service model; returns (arn, session, token, duration).

    Every constraint that fails is listed, as AWS does ("2 validation errors
    detected: ...; ..."). A RoleArn that passes the model but is not a role ARN is
    "Request ARN is invalid".
    """
    arn = params.get("RoleArn")
    session = params.get("RoleSessionName")
    token = params.get("WebIdentityToken")
    problems = _arn_problems("roleArn", arn, required=True)
    problems += _string_problems(
        "roleSessionName",
        session,
        required=True,
        min_len=2,
        max_len=64,
        pattern=_SESSION_NAME,
        pattern_text=r"[\w+=,.@-]*",
    )
    problems += _string_problems(
        "webIdentityToken",
        token,
        required=True,
        min_len=4,
        max_len=MAX_TOKEN_LENGTH,
        sensitive=True,
    )
    problems += _string_problems(
        "providerId", params.get("ProviderId"), required=False, min_len=4, max_len=2048
    )
    arns = policy_arns(params)
    for i, parn in enumerate(arns, 1):
        problems += _arn_problems(f"policyArns.{i}.member.arn", parn, required=False)
    problems += _string_problems(
        "policy",
        params.get("Policy"),
        required=False,
        min_len=1,
        max_len=2048,
        pattern=DOCUMENT_CHARS,
        pattern_text=DOCUMENT_CHARS_PATTERN,
    )
    duration: int | None = None
    raw = params.get("DurationSeconds")
    if raw is not None:
        if re.fullmatch(r"[+-]?\d{1,18}", raw.strip()):
            duration = int(raw)
            if duration < MIN_SESSION_DURATION_S:
                problems.append(
                    f"Value '{duration}' at 'durationSeconds' failed to satisfy constraint: "
                    f"Member must have value greater than or equal to {MIN_SESSION_DURATION_S}"
                )
            elif duration > MAX_ROLE_SESSION_DURATION_S:
                problems.append(
                    f"Value '{duration}' at 'durationSeconds' failed to satisfy constraint: "
                    f"Member must have value less than or equal to {MAX_ROLE_SESSION_DURATION_S}"
                )
        else:
            # [I] botocore never sends a non-number; the wording follows the model's form.
            problems.append(
                f"Value '{raw}' at 'durationSeconds' failed to satisfy constraint: "
                "Member must be a number"
            )
    raw_min = params.get("MinimumSessionTokenSize")
    if raw_min is not None and not (raw_min.isdigit() and int(raw_min) <= 4096):
        problems.append(
            f"Value '{raw_min}' at 'minimumSessionTokenSize' failed to satisfy constraint: "
            "Member must have value less than or equal to 4096"
        )
    if problems:
        raise _validation_error(
            problems, "The request breaks the STS service model: " + "; ".join(problems)
        )
    if len(arns) > MAX_POLICY_ARNS:
        raise _validation_error(
            [
                f"Value '[{', '.join(arns)}]' at 'policyArns' failed to satisfy constraint: "
                f"Member must have length less than or equal to {MAX_POLICY_ARNS}"
            ]
        )
    assert arn is not None and session is not None and token is not None
    if not _ROLE_ARN.fullmatch(arn):
        raise InvalidRoleArn(
            explanation=f"{arn!r} is not an IAM role ARN "
            "(arn:aws:iam::<12-digit account>:role/<name>).",
            step="parameters",
        )
    return arn, session, token, duration
