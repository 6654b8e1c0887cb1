//! The server proxy's message decoder: multipart framing, part order and limits, metadata,
//! and the REST header part / SOAP envelope it then reads. The first input byte chooses the
//! chunk size, so framing split across reads is exercised too.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use trustbus_security_server::transport::{Decoder, Limits, MessageReader, PayloadKind};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_head: 1 << 20,
        max_body: 1 << 20,
        ..Limits::default()
    };
    let Ok(mut dec) = Decoder::new("multipart/mixed; boundary=\"tbx-fuzz\"", &limits) else {
        return;
    };
    let mut reader = MessageReader::new(limits);
    let mut buf = BytesMut::new();
    for piece in data.chunks(usize::from(split).max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match dec.next_event(&mut buf) {
                Ok(Some(ev)) => {
                    if reader.on_event(ev).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
    if let Ok(msg) = reader.finish() {
        match msg.meta.kind {
            PayloadKind::Rest => {
                let _ = trustbus_sdk::rest::RequestHeaderPart::parse(&msg.head)
                    .map(|p| p.rest_request().map(|r| r.endpoint_path()));
            }
            PayloadKind::Soap => {
                let _ = trustbus_sdk::soap::parse_request(msg.head, &Default::default());
            }
        }
    }
});
