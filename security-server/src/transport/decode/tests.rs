use bytes::BytesMut;
use proptest::prelude::*;

use super::*;
use crate::transport::encode::{Encoder, ObjectDigest, manifest};
use crate::transport::{Direction, PayloadKind};

fn meta() -> Metadata {
    Metadata {
        protocol: crate::transport::PROTOCOL.into(),
        kind: PayloadKind::Rest,
        direction: Direction::Request,
        message_id: "m1".into(),
        request_id: "r1".into(),
        client: trustbus_sdk::ClientId::from_slash("DEV/GOV/1/a").unwrap(),
        service: trustbus_sdk::ServiceId::from_slash("DEV/GOV/2/b/svc").unwrap(),
        user: None,
        issue: None,
        represented_party: None,
        target_server: None,
        content_type: None,
        soap_action: None,
        request_hash: None,
        status: None,
    }
}

fn sample(body: Option<&[u8]>) -> (String, Vec<u8>) {
    let enc = Encoder::with_boundary("tbx-test");
    let m = meta().to_bytes();
    let head = b"GET\r\n/r1/DEV/GOV/2/b/svc\r\n".to_vec();
    let mut digests = vec![
        ObjectDigest::of(MESSAGE_JSON, CT_JSON, &m),
        ObjectDigest::of(PAYLOAD_HEAD, CT_REST_REQUEST, &head),
    ];
    let mut out = enc.part(MESSAGE_JSON, CT_JSON, &m);
    out.extend(enc.part(PAYLOAD_HEAD, CT_REST_REQUEST, &head));
    if let Some(b) = body {
        digests.push(ObjectDigest::of(PAYLOAD_BODY, CT_REST_BODY, b));
        out.extend(enc.part(PAYLOAD_BODY, CT_REST_BODY, b));
    }
    out.extend(enc.trailer(&manifest(&digests), b"sig", &[b"ocsp".to_vec()]));
    (enc.content_type(), out)
}

#[test]
fn round_trip_with_and_without_body() {
    for body in [None, Some(&b"{\"a\":1}\r\n--tbx-test\r\n"[..])] {
        let (ct, bytes) = sample(body);
        let (m, b) = decode_all(&ct, &bytes, &Limits::default()).unwrap();
        assert_eq!(m.meta, meta());
        assert_eq!(m.head, b"GET\r\n/r1/DEV/GOV/2/b/svc\r\n");
        assert_eq!(m.signature, b"sig");
        assert_eq!(m.auth_ocsp, vec![b"ocsp".to_vec()]);
        assert_eq!(b, body.unwrap_or_default());
        assert_eq!(
            manifest(&m.digests),
            m.manifest,
            "digests recomputed while reading"
        );
    }
}

#[test]
fn every_chunking_gives_the_same_message() {
    let (ct, bytes) = sample(Some(b"0123456789"));
    for split in 1..bytes.len() {
        let mut dec = Decoder::new(&ct, &Limits::default()).unwrap();
        let mut reader = MessageReader::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for piece in bytes.chunks(split) {
            buf.extend_from_slice(piece);
            while let Some(ev) = dec.next_event(&mut buf).unwrap() {
                if let Some(c) = reader.on_event(ev).unwrap() {
                    body.extend_from_slice(&c);
                }
            }
        }
        let m = reader.finish().unwrap();
        assert_eq!(body, b"0123456789");
        assert_eq!(manifest(&m.digests), m.manifest);
    }
}

#[test]
fn rejects_wrong_order_truncation_and_lengths() {
    let enc = Encoder::with_boundary("tbx-test");
    let m = meta().to_bytes();
    // head before metadata
    let mut out = enc.part(PAYLOAD_HEAD, CT_REST_REQUEST, b"x");
    out.extend(enc.part(MESSAGE_JSON, CT_JSON, &m));
    let e = decode_all(&enc.content_type(), &out, &Limits::default()).unwrap_err();
    assert!(matches!(e, DecodeError::Order(_)), "{e:?}");
    // truncated
    let (ct, bytes) = sample(None);
    let e = decode_all(&ct, &bytes[..bytes.len() - 10], &Limits::default()).unwrap_err();
    assert_eq!(e, DecodeError::Truncated);
    // a part longer than its Content-Length
    let bad =
        String::from_utf8(bytes)
            .unwrap()
            .replacen("Content-Length: 26", "Content-Length: 20", 1);
    assert!(decode_all(&ct, bad.as_bytes(), &Limits::default()).is_err());
    // too large a body
    let (ct, bytes) = sample(Some(&[0u8; 100]));
    let l = Limits {
        max_body: 99,
        ..Limits::default()
    };
    assert_eq!(
        decode_all(&ct, &bytes, &l).unwrap_err(),
        DecodeError::TooLarge("the payload body")
    );
    // not multipart/mixed
    assert!(matches!(
        decode_all("application/json", &bytes, &l).unwrap_err(),
        DecodeError::ContentType(_)
    ));
    // trailing garbage
    let mut more = sample(None).1;
    more.extend_from_slice(b"junk");
    assert!(decode_all(&ct, &more, &Limits::default()).is_err());
}

#[test]
fn unknown_protocol_is_refused() {
    let enc = Encoder::with_boundary("tbx-test");
    let mut m = meta();
    m.protocol = "trustbus/9".into();
    let mut out = enc.part(MESSAGE_JSON, CT_JSON, &m.to_bytes());
    out.extend(enc.part(PAYLOAD_HEAD, CT_REST_REQUEST, b"x"));
    out.extend(enc.trailer(b"m", b"s", &[]));
    assert!(matches!(
        decode_all(&enc.content_type(), &out, &Limits::default()).unwrap_err(),
        DecodeError::Metadata(_)
    ));
}

proptest! {
    #[test]
    fn decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), split in 1usize..64) {
        let mut dec = Decoder::new("multipart/mixed; boundary=b", &Limits::default()).unwrap();
        let mut reader = MessageReader::new(Limits::default());
        let mut buf = BytesMut::new();
        'outer: for piece in data.chunks(split) {
            buf.extend_from_slice(piece);
            loop {
                match dec.next_event(&mut buf) {
                    Ok(Some(ev)) => if reader.on_event(ev).is_err() { break 'outer },
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic(pos in 0usize..400, byte in any::<u8>()) {
        let (ct, mut bytes) = sample(Some(b"body"));
        let i = pos % bytes.len();
        bytes[i] = byte;
        let _ = decode_all(&ct, &bytes, &Limits::default());
    }
}
