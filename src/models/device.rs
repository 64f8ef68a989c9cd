//! Compute device selection for the candle models: `DOCPIPE_DEVICE=auto|cpu|cuda:N`.
//!
//! `auto` picks the first GPU when docpipe was built with the `cuda` feature and one is present, otherwise the CPU.
//! Asking for `cuda:N` from a build without the `cuda` feature is a configuration error, never a silent CPU fallback.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

/// Environment variable that selects the compute device.
pub const DEVICE_ENV: &str = "DOCPIPE_DEVICE";

/// Errors of device selection.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The value is not one of `auto`, `cpu`, `cuda` or `cuda:N`.
    #[error("invalid device {0:?}: expected auto, cpu, cuda or cuda:N (N = GPU ordinal)")]
    Invalid(String),
    /// A GPU was asked for but this binary was built without the `cuda` feature.
    #[error(
        "device {0} needs a docpipe built with the `cuda` feature (cargo build --features cuda)"
    )]
    CudaNotCompiled(DeviceSpec),
    /// The GPU could not be opened.
    #[error("cannot open {spec}: {source}")]
    Open {
        /// The device that was asked for.
        spec: DeviceSpec,
        /// candle's error.
        source: candle_core::Error,
    },
}

/// A device choice as configured, before it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// GPU 0 when built with `cuda` and a GPU is present, else CPU.
    #[default]
    Auto,
    /// Always the CPU.
    Cpu,
    /// The GPU with this ordinal.
    Cuda(usize),
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(ordinal) => write!(f, "cuda:{ordinal}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = s.trim().to_ascii_lowercase();
        match value.as_str() {
            "" | "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            _ => value
                .strip_prefix("cuda:")
                .and_then(|ordinal| ordinal.parse::<usize>().ok())
                .map(Self::Cuda)
                .ok_or_else(|| DeviceError::Invalid(s.to_owned())),
        }
    }
}

impl DeviceSpec {
    /// Reads [`DEVICE_ENV`]; unset means [`DeviceSpec::Auto`].
    pub fn from_env() -> Result<Self, DeviceError> {
        std::env::var(DEVICE_ENV).map_or(Ok(Self::Auto), |value| value.parse())
    }

    /// Opens the device.
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(auto_device()),
            Self::Cuda(ordinal) => open_cuda(self, ordinal),
        }
    }
}

/// A short human-readable name of an opened device, for logs and `/v1/models`.
pub fn device_name(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".to_owned(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(feature = "cuda")]
fn auto_device() -> Device {
    if candle_core::utils::cuda_is_available() {
        // A GPU that fails to open (driver mismatch, out of memory) leaves the service usable on the CPU.
        Device::new_cuda(0).unwrap_or(Device::Cpu)
    } else {
        Device::Cpu
    }
}

#[cfg(not(feature = "cuda"))]
fn auto_device() -> Device {
    Device::Cpu
}

#[cfg(feature = "cuda")]
fn open_cuda(spec: DeviceSpec, ordinal: usize) -> Result<Device, DeviceError> {
    Device::new_cuda(ordinal).map_err(|source| DeviceError::Open { spec, source })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(spec: DeviceSpec, _ordinal: usize) -> Result<Device, DeviceError> {
    Err(DeviceError::CudaNotCompiled(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_specs() {
        assert_eq!("auto".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!("".parse::<DeviceSpec>().unwrap(), DeviceSpec::Auto);
        assert_eq!(" CPU ".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(3));
        for bad in ["cuda:", "cuda:x", "tpu", "cuda:-1"] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(err, DeviceError::Invalid(_)), "{bad}: {err}");
        }
        assert_eq!(DeviceSpec::Cuda(2).to_string(), "cuda:2");
    }

    #[test]
    fn cpu_and_auto_open() {
        assert!(DeviceSpec::Cpu.open().unwrap().is_cpu());
        let auto = DeviceSpec::Auto.open().unwrap();
        if !cfg!(feature = "cuda") {
            assert!(auto.is_cpu());
        }
        assert_eq!(device_name(&Device::Cpu), "cpu");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_feature_is_a_config_error() {
        let err = DeviceSpec::Cuda(1).open().unwrap_err();
        assert!(matches!(
            err,
            DeviceError::CudaNotCompiled(DeviceSpec::Cuda(1))
        ));
        assert!(err.to_string().contains("--features cuda"), "{err}");
    }
}
