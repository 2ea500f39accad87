"""Names the protocol gives meaning to: error codes and built-in function ids.

The codes the official engine and SDKs use are spelled as they are on the wire (spec §7);
the few that are anyiii's own say so.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "FUNCTION_NAMESPACE_CONFLICT",
    "FUNCTION_NOT_FOUND",
    "INVALID_INVOCATION_ID",
    "INVOCATION_FAILED",
    "INVOCATION_STOPPED",
    "MALFORMED_FRAME",
    "REGISTER_WORKER",
    "TRIGGER_REGISTRATION_FAILED",
]

REGISTER_WORKER: Final = "engine::workers::register"
"""The built-in every worker calls (void) right after connecting (spec §4.2)."""

FUNCTION_NOT_FOUND: Final = "function_not_found"
INVOCATION_FAILED: Final = "invocation_failed"
INVOCATION_STOPPED: Final = "invocation_stopped"
TRIGGER_REGISTRATION_FAILED: Final = "trigger_registration_failed"
FUNCTION_NAMESPACE_CONFLICT: Final = "FUNCTION_NAMESPACE_CONFLICT"
"""The one `registrationrejected` code that is not fatal (spec §3.11)."""

MALFORMED_FRAME: Final = "malformed_frame"
"""anyiii's own: the frame of this invocation (or of its result) could not be decoded."""

INVALID_INVOCATION_ID: Final = "invalid_invocation_id"
"""anyiii's own: a call's invocation id is not UUID text (the Rust engine drops those)."""
