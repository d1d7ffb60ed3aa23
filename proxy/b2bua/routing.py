"""Who is calling which privacy number, and where the call goes (design.md §1, AXB).

The caller is the P-Asserted-Identity user when the sending peer is trusted (RFC 3325
§9.1: only a trusted peer's assertion is believed), otherwise the From user; X is the
Request-URI user. Both are normalised by the configured ``NumberPlan``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from proxy.b2bua.privacy import uri_user
from proxy.numbers import NumberError, NumberPlan
from proxy.sip.message import Request


class BindingView(Protocol):
    """What routing needs of a binding (``bindings.models.Binding`` satisfies it)."""

    @property
    def id(self) -> str: ...
    @property
    def tenant(self) -> str: ...
    @property
    def a(self) -> str: ...
    @property
    def b(self) -> str: ...
    @property
    def x(self) -> str: ...
    @property
    def max_call_s(self) -> int | None: ...
    def is_live(self, now: float) -> bool: ...
    def allows(self, caller: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class CallAttempt:
    """A call to privacy number ``x`` from real number ``caller`` (E.164)."""

    x: str
    caller: str


@dataclass(frozen=True, slots=True)
class Route:
    """Place the B leg to ``callee``, showing ``x``."""

    binding_id: str
    tenant: str
    x: str
    caller: str
    callee: str
    direction: str
    max_call_s: int | None


@dataclass(frozen=True, slots=True)
class Reject:
    """Refuse the call with ``status``/``reason``; ``cause`` goes into the call record."""

    status: int
    reason: str
    cause: str
    headers: tuple[tuple[str, str], ...] = ()


NOT_A_PRIVACY_NUMBER = Reject(404, "Not a privacy number", "no_binding")
NO_BINDING = Reject(404, "No binding", "no_binding")
EXPIRED = Reject(404, "Binding expired", "expired")
DIRECTION = Reject(403, "Direction not allowed", "direction")


def identify(request: Request, plan: NumberPlan, *, trusted: bool) -> CallAttempt | Reject:
    """Read X and the caller from an initial INVITE."""
    x_text = uri_user(request.request_uri)
    if x_text is None:
        return NOT_A_PRIVACY_NUMBER
    try:
        x = plan.privacy(x_text)
    except NumberError:
        return NOT_A_PRIVACY_NUMBER
    caller_text = None
    if trusted:
        for identity in request.p_asserted_identities:
            caller_text = uri_user(identity.uri)
            if caller_text:
                break
    if not caller_text:
        caller_text = uri_user(request.from_.uri)
    if not caller_text:
        return NO_BINDING
    try:
        caller = plan.real(caller_text)
    except NumberError:
        return NO_BINDING
    return CallAttempt(x, caller)


def decide(binding: BindingView | None, attempt: CallAttempt, now: float) -> Route | Reject:
    """Route on the binding found for (X, caller), or say why not (design.md §1)."""
    if binding is None:
        return NO_BINDING
    if not binding.is_live(now):
        return EXPIRED
    if not binding.allows(attempt.caller):
        return DIRECTION
    caller_is_a = attempt.caller == binding.a
    return Route(
        binding_id=binding.id,
        tenant=binding.tenant,
        x=binding.x,
        caller=attempt.caller,
        callee=binding.b if caller_is_a else binding.a,
        direction="a_to_b" if caller_is_a else "b_to_a",
        max_call_s=binding.max_call_s,
    )
