//! Tests for the SOAP parser and builders.
