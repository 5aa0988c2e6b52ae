//! The conformance suite over the in-process transport of yoton-core.

yoton_conformance::conformance_tests!(
    yoton_conformance::inproc_target(),
    also: rebind_after_close, rebind_after_bind
);
