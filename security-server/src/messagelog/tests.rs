//! Tests of the message log as a whole (journal + chain + store + recovery).
