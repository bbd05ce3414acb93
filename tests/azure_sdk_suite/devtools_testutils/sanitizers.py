"""Stand-in: sanitizers and matchers shape recordings, which a live run does not make."""

from __future__ import annotations

from devtools_testutils import _no_recording

add_remove_header_sanitizer = _no_recording
add_general_regex_sanitizer = _no_recording
set_custom_default_matcher = _no_recording
