//! The OpenAPI 3 document served at `/api/openapi.json` (hand-written; a test checks that it
//! lists every route of the routers).

/// The document.
pub const DOCUMENT: &str = include_str!("openapi.json");
