//! Reading what a WSDL 1.1 document offers: its operation names (from `portType` and
//! `binding`) and the SOAP endpoint addresses of its ports. The document comes from a URL an
//! operator gave, so it is read with the hardened reader: no DOCTYPE, no entities, bounded
//! size and depth.

use quick_xml::events::Event;

use crate::xml::Reader;

/// The WSDL 1.1 namespace.
pub const WSDL_NS: &str = "http://schemas.xmlsoap.org/wsdl/";
const SOAP11_BINDING_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap/";
const SOAP12_BINDING_NS: &str = "http://schemas.xmlsoap.org/wsdl/soap12/";

/// Largest WSDL document read.
pub const MAX_WSDL_BYTES: usize = 10 << 20;
const MAX_DEPTH: usize = 64;
/// Most operations accepted from one document.
pub const MAX_OPERATIONS: usize = 10_000;

/// What a WSDL document describes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WsdlInfo {
    /// Operation names, each once, in document order (portType operations, then any only
    /// named in a binding).
    pub operations: Vec<String>,
    /// `location` of every `soap:address` / `soap12:address`, in document order.
    pub addresses: Vec<String>,
}

/// Why a document is not a usable WSDL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid WSDL: {0}")]
pub struct WsdlError(pub String);

/// Reads the operations and addresses of the WSDL 1.1 document `bytes`.
pub fn read_wsdl(bytes: &[u8]) -> Result<WsdlInfo, WsdlError> {
    let err = |m: String| WsdlError(m);
    let mut r = Reader::new(bytes, MAX_WSDL_BYTES, MAX_DEPTH).map_err(|e| err(e.to_string()))?;
    // Expanded names of the open elements.
    let mut stack: Vec<(String, String)> = Vec::new();
    let mut info = WsdlInfo::default();
    let mut saw_root = false;
    loop {
        let ev = r.next().map_err(|e| err(e.to_string()))?;
        let (start, empty) = match &ev.event {
            Event::Start(s) => (s.clone(), false),
            Event::Empty(s) => (s.clone(), true),
            Event::End(_) => {
                stack.pop();
                continue;
            }
            Event::Eof => break,
            _ => continue,
        };
        let name = r
            .element_name(start.name())
            .map_err(|e| err(e.to_string()))?;
        if !saw_root {
            saw_root = true;
            if !name.is(WSDL_NS, "definitions") {
                return Err(err(format!(
                    "the root element is {{{}}}{}, not a WSDL 1.1 definitions element",
                    name.ns, name.local
                )));
            }
        }
        let parent = stack.last();
        let in_wsdl = |local: &str| parent.is_some_and(|(ns, l)| ns == WSDL_NS && l == local);
        if name.is(WSDL_NS, "operation") && (in_wsdl("portType") || in_wsdl("binding")) {
            let op = r
                .attribute(&start, "", "name")
                .map_err(|e| err(e.to_string()))?
                .ok_or_else(|| err("an operation has no name".into()))?;
            crate::id::validate_segment("operation name", &op)
                .map_err(|e| err(format!("operation {op:?}: {e}")))?;
            if !info.operations.contains(&op) {
                if info.operations.len() >= MAX_OPERATIONS {
                    return Err(err(format!("more than {MAX_OPERATIONS} operations")));
                }
                info.operations.push(op);
            }
        }
        let is_address = name.local == "address"
            && (name.ns == SOAP11_BINDING_NS || name.ns == SOAP12_BINDING_NS)
            && in_wsdl("port");
        let location = if is_address {
            r.attribute(&start, "", "location")
                .map_err(|e| err(e.to_string()))?
        } else {
            None
        };
        if let Some(loc) = location.filter(|_| info.addresses.len() < MAX_OPERATIONS) {
            info.addresses.push(loc);
        }
        if !empty {
            stack.push((name.ns, name.local));
        }
    }
    if !saw_root {
        return Err(err("the document is empty".into()));
    }
    if info.operations.is_empty() {
        return Err(err("no operations".into()));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:tns="urn:t" targetNamespace="urn:t">
  <wsdl:message name="getPerson"/>
  <wsdl:portType name="P">
    <wsdl:operation name="getPerson"><wsdl:input message="tns:getPerson"/></wsdl:operation>
    <wsdl:operation name="listPersons"/>
  </wsdl:portType>
  <wsdl:binding name="B" type="tns:P">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="getPerson"><soap:operation soapAction=""/></wsdl:operation>
    <wsdl:operation name="bindingOnly"/>
  </wsdl:binding>
  <wsdl:service name="S">
    <wsdl:port name="p" binding="tns:B"><soap:address location="http://backend:8080/soap"/></wsdl:port>
  </wsdl:service>
</wsdl:definitions>"#;

    #[test]
    fn reads_operations_and_addresses() {
        let info = read_wsdl(DOC.as_bytes()).unwrap();
        assert_eq!(info.operations, ["getPerson", "listPersons", "bindingOnly"]);
        assert_eq!(info.addresses, ["http://backend:8080/soap"]);
    }

    #[test]
    fn refuses_doctype_wrong_root_and_bad_names() {
        let xxe = format!(
            "<!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
            DOC.trim_start_matches("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        );
        assert!(read_wsdl(xxe.as_bytes()).is_err());
        assert!(read_wsdl(b"<definitions/>").is_err());
        assert!(read_wsdl(b"").is_err());
        let bad = DOC.replace("listPersons", "list/../Persons");
        assert!(read_wsdl(bad.as_bytes()).is_err());
        let none = r#"<d:definitions xmlns:d="http://schemas.xmlsoap.org/wsdl/"/>"#;
        assert_eq!(
            read_wsdl(none.as_bytes()),
            Err(WsdlError("no operations".into()))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = read_wsdl(&b);
        }

        #[test]
        fn truncated_or_mangled_documents_never_panic(cut in 0usize..DOC.len(), at in 0usize..DOC.len(), byte in proptest::prelude::any::<u8>()) {
            let _ = read_wsdl(&DOC.as_bytes()[..cut]);
            let mut b = DOC.as_bytes().to_vec();
            b[at] = byte;
            let _ = read_wsdl(&b);
        }
    }
}
