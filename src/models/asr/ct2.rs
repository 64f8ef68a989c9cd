//! Reader for CTranslate2's `model.bin` (format version 6, as written by `ct2-transformers-converter`).
//!
//! Layout, little-endian: `u32 version | string spec_name | u32 revision | u32 n_variables`, then per variable
//! `string name | u8 rank | u32 dims[rank] | u8 dtype | u32 nbytes | data`, then `u32 n_aliases` and pairs of
//! strings (alias, target). A string is `u16 length including the NUL | bytes | NUL`.

use std::collections::BTreeMap;

/// The only `model.bin` version this reader knows.
pub const SUPPORTED_VERSION: u32 = 6;

/// Element type of a variable (CTranslate2's `DataType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    Bf16,
}

impl DType {
    fn from_code(code: u8) -> Option<DType> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::Bf16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::Bf16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

/// One named variable: its shape (outermost first, as in PyTorch), element type and raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Variable {
    pub dims: Vec<usize>,
    pub dtype: DType,
    pub data: Vec<u8>,
}

impl Variable {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    /// True when the variable holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An integer scalar (rank 0), whatever its integer width.
    pub fn scalar_int(&self) -> Option<i64> {
        if !self.dims.is_empty() {
            return None;
        }
        let b = &self.data;
        match self.dtype {
            DType::I8 => b.first().map(|&v| i64::from(v as i8)),
            DType::I16 => Some(i64::from(i16::from_le_bytes(b.get(..2)?.try_into().ok()?))),
            DType::I32 => Some(i64::from(i32::from_le_bytes(b.get(..4)?.try_into().ok()?))),
            DType::F32 | DType::F16 | DType::Bf16 => None,
        }
    }

    /// The rows `rows` of a matrix (or the elements of a vector) as a new variable.
    pub fn rows(&self, rows: std::ops::Range<usize>) -> Variable {
        let row_elems: usize = self.dims.iter().skip(1).product();
        let row_bytes = row_elems * self.dtype.size();
        let mut dims = self.dims.clone();
        dims[0] = rows.len();
        Variable {
            dims,
            dtype: self.dtype,
            data: self.data[rows.start * row_bytes..rows.end * row_bytes].to_vec(),
        }
    }
}

/// Why a `model.bin` cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    #[error("model.bin ends early (at byte {0})")]
    Truncated(usize),
    #[error("model.bin version {0} is not supported (expected {SUPPORTED_VERSION})")]
    Version(u32),
    #[error("model.bin: unknown data type {code} for {name}")]
    DType { name: String, code: u8 },
    #[error("model.bin: {name} has {got} bytes, its shape needs {expected}")]
    Size {
        name: String,
        got: usize,
        expected: usize,
    },
    #[error("model.bin: a name is not UTF-8")]
    Name,
}

/// A parsed `model.bin`.
#[derive(Debug, Clone)]
pub struct Ct2Model {
    /// `WhisperSpec` for Whisper models.
    pub spec: String,
    /// The spec's revision.
    pub revision: u32,
    /// Variables by name (aliases resolved into copies are not made; see [`get`](Self::get)).
    pub variables: BTreeMap<String, Variable>,
    /// alias -> target.
    pub aliases: BTreeMap<String, String>,
}

impl Ct2Model {
    /// Parses the whole file.
    pub fn parse(bytes: &[u8]) -> Result<Ct2Model, Ct2Error> {
        let mut r = Reader { bytes, pos: 0 };
        let version = r.u32()?;
        if version != SUPPORTED_VERSION {
            return Err(Ct2Error::Version(version));
        }
        let spec = r.string()?;
        let revision = r.u32()?;
        let n = r.u32()? as usize;
        let mut variables = BTreeMap::new();
        for _ in 0..n {
            let name = r.string()?;
            let rank = r.u8()?;
            let mut dims = Vec::with_capacity(usize::from(rank));
            for _ in 0..rank {
                dims.push(r.u32()? as usize);
            }
            let code = r.u8()?;
            let dtype = DType::from_code(code).ok_or_else(|| Ct2Error::DType {
                name: name.clone(),
                code,
            })?;
            let nbytes = r.u32()? as usize;
            let expected = dims.iter().product::<usize>() * dtype.size();
            if nbytes != expected {
                return Err(Ct2Error::Size {
                    name,
                    got: nbytes,
                    expected,
                });
            }
            let data = r.take(nbytes)?.to_vec();
            variables.insert(name, Variable { dims, dtype, data });
        }
        let mut aliases = BTreeMap::new();
        // Files written before aliases existed end here.
        if r.pos < bytes.len() {
            let n = r.u32()?;
            for _ in 0..n {
                let alias = r.string()?;
                let target = r.string()?;
                aliases.insert(alias, target);
            }
        }
        Ok(Ct2Model {
            spec,
            revision,
            variables,
            aliases,
        })
    }

    /// A variable by name or alias.
    pub fn get(&self, name: &str) -> Option<&Variable> {
        self.variables.get(name).or_else(|| {
            self.aliases
                .get(name)
                .and_then(|target| self.variables.get(target))
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Ct2Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(Ct2Error::Truncated(self.pos))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Ct2Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Ct2Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Ct2Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self) -> Result<String, Ct2Error> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        String::from_utf8(b.to_vec()).map_err(|_| Ct2Error::Name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        out.push(0);
    }

    fn sample() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&6u32.to_le_bytes());
        string(&mut b, "WhisperSpec");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u32.to_le_bytes());
        string(&mut b, "a/heads");
        b.push(0);
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&6i16.to_le_bytes());
        string(&mut b, "a/w");
        b.push(2);
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(0);
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&1.5f32.to_le_bytes());
        b.extend_from_slice(&(-2.0f32).to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        string(&mut b, "a/alias");
        string(&mut b, "a/w");
        b
    }

    #[test]
    fn parses_variables_scalars_and_aliases() {
        let m = Ct2Model::parse(&sample()).expect("valid");
        assert_eq!(m.spec, "WhisperSpec");
        assert_eq!(m.revision, 3);
        assert_eq!(m.get("a/heads").and_then(Variable::scalar_int), Some(6));
        let w = m.get("a/alias").expect("alias resolves");
        assert_eq!(w.dims, vec![2, 1]);
        assert_eq!(w.rows(1..2).data, (-2.0f32).to_le_bytes().to_vec());
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let b = sample();
        assert!(matches!(
            Ct2Model::parse(&b[..b.len() - 12]),
            Err(Ct2Error::Truncated(_))
        ));
        let mut v5 = b.clone();
        v5[0] = 5;
        assert!(matches!(Ct2Model::parse(&v5), Err(Ct2Error::Version(5))));
    }
}
