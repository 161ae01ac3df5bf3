//! Testbed harness (placeholder).
