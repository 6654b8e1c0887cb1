//! Merkle-tree batches for timestamping many records with one TSA call (RFC 6962 / 9162 style).
//!
//! Leaves are record hashes. Hashing is domain-separated: a leaf is `H(0x00 || record_hash)`,
//! an inner node `H(0x01 || left || right)`. The tree over `n` leaves is RFC 6962's Merkle Tree
//! Hash: the left subtree holds the largest power of two smaller than `n` leaves. The root is
//! what gets timestamped; each record keeps an inclusion proof (its index, the tree size and
//! the audit path), serialised as JSON for the evidence container.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::digest::DigestAlgorithm;

/// Largest batch we build or accept a proof for (2^32 leaves).
const MAX_TREE_SIZE: u64 = 1 << 32;

/// Why a tree or proof could not be made or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A tree needs at least one leaf.
    #[error("a Merkle tree needs at least one leaf")]
    Empty,
    /// The index is not inside the tree.
    #[error("leaf index {index} outside a tree of {size}")]
    IndexOutOfRange {
        /// The requested index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The proof does not lead to the expected root.
    #[error("inclusion proof does not lead to the root")]
    RootMismatch,
    /// The proof is structurally wrong (path length, hash sizes, encoding).
    #[error("malformed inclusion proof: {0}")]
    Malformed(String),
}

fn leaf_hash(alg: DigestAlgorithm, record_hash: &[u8]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(alg.ring());
    ctx.update(&[0x00]);
    ctx.update(record_hash);
    ctx.finish().as_ref().to_vec()
}

fn node_hash(alg: DigestAlgorithm, left: &[u8], right: &[u8]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(alg.ring());
    ctx.update(&[0x01]);
    ctx.update(left);
    ctx.update(right);
    ctx.finish().as_ref().to_vec()
}

/// A Merkle tree over a batch of record hashes, with every level kept for proofs.
#[derive(Debug, Clone)]
pub struct MerkleTree {
    alg: DigestAlgorithm,
    /// levels[0] are the leaf hashes; the last level has the root alone.
    levels: Vec<Vec<Vec<u8>>>,
}

impl MerkleTree {
    /// Builds the tree over `record_hashes` (in order) with `alg`.
    pub fn new(alg: DigestAlgorithm, record_hashes: &[Vec<u8>]) -> Result<Self, MerkleError> {
        if record_hashes.is_empty() {
            return Err(MerkleError::Empty);
        }
        if record_hashes.len() as u64 > MAX_TREE_SIZE {
            return Err(MerkleError::Malformed("too many leaves".into()));
        }
        let mut levels = vec![
            record_hashes
                .iter()
                .map(|h| leaf_hash(alg, h))
                .collect::<Vec<_>>(),
        ];
        // Pairing left to right and carrying an odd last node up unchanged gives exactly
        // RFC 6962's MTH (the left subtree is always the largest power of two).
        while let Some(level) = levels.last().filter(|l| l.len() > 1) {
            let next = level
                .chunks(2)
                .map(|c| match c {
                    [l, r] => node_hash(alg, l, r),
                    [single] => single.clone(),
                    _ => Vec::new(),
                })
                .collect();
            levels.push(next);
        }
        Ok(Self { alg, levels })
    }

    /// The digest algorithm.
    pub fn algorithm(&self) -> DigestAlgorithm {
        self.alg
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The root hash (what gets timestamped).
    pub fn root(&self) -> &[u8] {
        self.levels
            .last()
            .and_then(|l| l.first())
            .map_or(&[][..], |r| r.as_slice())
    }

    /// The inclusion proof for the leaf at `index`.
    pub fn proof(&self, index: u64) -> Result<InclusionProof, MerkleError> {
        let size = self.size();
        if index >= size {
            return Err(MerkleError::IndexOutOfRange { index, size });
        }
        let mut path = Vec::new();
        let mut i = usize::try_from(index).map_err(|_| MerkleError::Malformed("index".into()))?;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = i ^ 1;
            if let Some(h) = level.get(sibling) {
                path.push(h.clone());
            }
            i /= 2;
        }
        Ok(InclusionProof {
            alg: self.alg,
            leaf_index: index,
            tree_size: size,
            path,
        })
    }
}

/// A proof that one record hash is a leaf of a tree with a given root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The digest algorithm.
    pub alg: DigestAlgorithm,
    /// The leaf's position (0-based).
    pub leaf_index: u64,
    /// The number of leaves in the tree.
    pub tree_size: u64,
    /// Sibling hashes from the leaf level upwards.
    pub path: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofJson {
    alg: String,
    #[serde(rename = "leafIndex")]
    leaf_index: u64,
    #[serde(rename = "treeSize")]
    tree_size: u64,
    path: Vec<String>,
    root: String,
}

impl InclusionProof {
    /// Computes the root the proof leads to from `record_hash` (RFC 9162 2.1.3.2).
    pub fn root_for(&self, record_hash: &[u8]) -> Result<Vec<u8>, MerkleError> {
        if self.tree_size == 0 || self.tree_size > MAX_TREE_SIZE {
            return Err(MerkleError::Malformed("tree size".into()));
        }
        if self.leaf_index >= self.tree_size {
            return Err(MerkleError::IndexOutOfRange {
                index: self.leaf_index,
                size: self.tree_size,
            });
        }
        let n = self.alg.output_len();
        let mut fn_ = self.leaf_index;
        let mut sn = self.tree_size - 1;
        let mut r = leaf_hash(self.alg, record_hash);
        for p in &self.path {
            if p.len() != n {
                return Err(MerkleError::Malformed("hash length".into()));
            }
            if sn == 0 {
                return Err(MerkleError::Malformed("path too long".into()));
            }
            if fn_ & 1 == 1 || fn_ == sn {
                r = node_hash(self.alg, p, &r);
                if fn_ & 1 == 0 {
                    while fn_ & 1 == 0 && fn_ != 0 {
                        fn_ >>= 1;
                        sn >>= 1;
                    }
                }
            } else {
                r = node_hash(self.alg, &r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        if sn != 0 {
            return Err(MerkleError::Malformed("path too short".into()));
        }
        Ok(r)
    }

    /// Checks that `record_hash` is in the tree with root `root`.
    pub fn verify(&self, record_hash: &[u8], root: &[u8]) -> Result<(), MerkleError> {
        if self.root_for(record_hash)? == root {
            Ok(())
        } else {
            Err(MerkleError::RootMismatch)
        }
    }

    /// The JSON form stored next to a record (`META-INF/merkle-proof.json` in evidence), with
    /// the root it leads to for `record_hash`.
    pub fn to_json(&self, root: &[u8]) -> Vec<u8> {
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let j = ProofJson {
            alg: self.alg.uri().to_owned(),
            leaf_index: self.leaf_index,
            tree_size: self.tree_size,
            path: self.path.iter().map(|p| b64(p)).collect(),
            root: b64(root),
        };
        serde_json::to_vec_pretty(&j).unwrap_or_default()
    }

    /// Reads the JSON form; returns the proof and the root it claims.
    pub fn from_json(json: &[u8]) -> Result<(Self, Vec<u8>), MerkleError> {
        let j: ProofJson =
            serde_json::from_slice(json).map_err(|e| MerkleError::Malformed(e.to_string()))?;
        let alg = DigestAlgorithm::from_uri(&j.alg)
            .filter(|a| *a != DigestAlgorithm::Sha1)
            .ok_or_else(|| MerkleError::Malformed(format!("algorithm {}", j.alg)))?;
        let d = |s: &String| {
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| MerkleError::Malformed(e.to_string()))
        };
        if j.path.len() > 64 {
            return Err(MerkleError::Malformed("path too long".into()));
        }
        let path = j.path.iter().map(d).collect::<Result<Vec<_>, _>>()?;
        Ok((
            Self {
                alg,
                leaf_index: j.leaf_index,
                tree_size: j.tree_size,
                path,
            },
            d(&j.root)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6962 MTH, straight from the definition.
    fn mth(alg: DigestAlgorithm, d: &[Vec<u8>]) -> Vec<u8> {
        match d.len() {
            1 => leaf_hash(alg, &d[0]),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(alg, &mth(alg, &d[..k]), &mth(alg, &d[k..]))
            }
        }
    }

    fn records(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| DigestAlgorithm::Sha256.digest(&i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn known_shapes() {
        let alg = DigestAlgorithm::Sha256;
        let r = records(3);
        let t = MerkleTree::new(alg, &r).unwrap();
        let expect = node_hash(
            alg,
            &node_hash(alg, &leaf_hash(alg, &r[0]), &leaf_hash(alg, &r[1])),
            &leaf_hash(alg, &r[2]),
        );
        assert_eq!(t.root(), expect.as_slice());
        assert_eq!(MerkleTree::new(alg, &[]).unwrap_err(), MerkleError::Empty);
        let one = MerkleTree::new(alg, &r[..1]).unwrap();
        assert_eq!(one.root(), leaf_hash(alg, &r[0]).as_slice());
        let p = one.proof(0).unwrap();
        assert!(p.path.is_empty());
        p.verify(&r[0], one.root()).unwrap();
        assert!(matches!(
            t.proof(3),
            Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
        ));
    }

    #[test]
    fn json_round_trip() {
        let r = records(5);
        let t = MerkleTree::new(DigestAlgorithm::Sha256, &r).unwrap();
        let p = t.proof(4).unwrap();
        let (q, root) = InclusionProof::from_json(&p.to_json(t.root())).unwrap();
        assert_eq!(p, q);
        q.verify(&r[4], &root).unwrap();
        assert!(InclusionProof::from_json(b"{}").is_err());
    }

    proptest! {
        #[test]
        fn root_matches_rfc6962_definition(n in 1usize..80) {
            let r = records(n);
            let t = MerkleTree::new(DigestAlgorithm::Sha256, &r).unwrap();
            let expect = mth(DigestAlgorithm::Sha256, &r);
            prop_assert_eq!(t.root(), expect.as_slice());
        }

        #[test]
        fn every_proof_verifies_and_no_other_record_does(n in 1usize..70, pick in any::<prop::sample::Index>()) {
            let r = records(n);
            let t = MerkleTree::new(DigestAlgorithm::Sha256, &r).unwrap();
            let i = pick.index(n);
            let p = t.proof(i as u64).unwrap();
            prop_assert!(p.verify(&r[i], t.root()).is_ok());
            let other = DigestAlgorithm::Sha256.digest(b"not in the batch");
            prop_assert_eq!(p.verify(&other, t.root()), Err(MerkleError::RootMismatch));
            if n > 1 {
                // the same proof claimed for another index does not verify
                let mut q = p;
                q.leaf_index = ((i + 1) % n) as u64;
                prop_assert!(q.verify(&r[i], t.root()).is_err());
            }
        }

        #[test]
        fn tampered_path_fails(n in 2usize..40, pick in any::<prop::sample::Index>(), byte in 0usize..32) {
            let r = records(n);
            let t = MerkleTree::new(DigestAlgorithm::Sha256, &r).unwrap();
            let i = pick.index(n);
            let mut p = t.proof(i as u64).unwrap();
            let k = byte % p.path.len();
            p.path[k][byte] ^= 1;
            prop_assert_eq!(p.verify(&r[i], t.root()), Err(MerkleError::RootMismatch));
        }

        #[test]
        fn arbitrary_proofs_never_panic(idx in any::<u64>(), size in any::<u64>(), path in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..40)) {
            let p = InclusionProof { alg: DigestAlgorithm::Sha256, leaf_index: idx, tree_size: size, path };
            let _ = p.verify(b"x", &[0; 32]);
        }
    }
}
