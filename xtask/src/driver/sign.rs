//! Test signing: a throwaway self-signed code-signing certificate (made once
//! with openssl, kept under the driver target directory), an Authenticode
//! signature on a copy of gate.sys made with osslsigncode, and a
//! verification of that signature with the certificate as the only trusted
//! root. A Windows machine in test-signing mode loads the signed copy.

use crate::deps::{self, Pkg};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

const PKGS: &[Pkg] = &[
    Pkg::new("osslsigncode", "/usr/bin/osslsigncode"),
    Pkg::new("openssl", "/usr/bin/openssl"),
];

/// The test certificate: PEM certificate and key, and the DER copy to
/// import on Windows.
pub struct TestCert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    pub cert_der: PathBuf,
}

fn run(what: &str, cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("starting {what}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{what} failed ({}):\n{text}", out.status);
    }
    Ok(text)
}

/// Creates the certificate in `dir` unless it is already there.
pub fn test_cert(dir: &Path) -> Result<TestCert> {
    deps::ensure("test-signing gate.sys", PKGS)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cert = TestCert {
        cert_pem: dir.join("gate-test.pem"),
        key_pem: dir.join("gate-test.key"),
        cert_der: dir.join("gate-test.cer"),
    };
    if cert.cert_pem.exists() && cert.key_pem.exists() && cert.cert_der.exists() {
        return Ok(cert);
    }
    run(
        "openssl req (test certificate)",
        Command::new("/usr/bin/openssl")
            .args(["req", "-x509", "-newkey", "rsa:3072", "-nodes", "-sha256"])
            .args(["-days", "365", "-subj", "/CN=gate test signing (throwaway)"])
            .args(["-addext", "extendedKeyUsage=codeSigning"])
            .args(["-addext", "keyUsage=critical,digitalSignature"])
            .arg("-keyout")
            .arg(&cert.key_pem)
            .arg("-out")
            .arg(&cert.cert_pem),
    )?;
    run(
        "openssl x509 (DER copy)",
        Command::new("/usr/bin/openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert.cert_pem)
            .arg("-out")
            .arg(&cert.cert_der),
    )?;
    Ok(cert)
}

/// Signs `sys` into `signed` (SHA-256 Authenticode) and verifies the result
/// against the test certificate.
pub fn sign_and_verify(sys: &Path, signed: &Path, cert: &TestCert) -> Result<()> {
    if let Some(dir) = signed.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if signed.exists() {
        std::fs::remove_file(signed).with_context(|| format!("removing {}", signed.display()))?;
    }
    run(
        "osslsigncode sign",
        Command::new("/usr/bin/osslsigncode")
            .args(["sign", "-h", "sha256", "-n", "gate"])
            .arg("-certs")
            .arg(&cert.cert_pem)
            .arg("-key")
            .arg(&cert.key_pem)
            .arg("-in")
            .arg(sys)
            .arg("-out")
            .arg(signed),
    )?;
    verify(signed, cert)
}

/// Verifies the Authenticode signature of `signed` with the test
/// certificate as the trusted root.
pub fn verify(signed: &Path, cert: &TestCert) -> Result<()> {
    let out = run(
        "osslsigncode verify",
        Command::new("/usr/bin/osslsigncode")
            .arg("verify")
            .arg("-CAfile")
            .arg(&cert.cert_pem)
            .arg("-in")
            .arg(signed),
    )?;
    if !out.contains("Signature verification: ok") {
        bail!(
            "osslsigncode verify did not report a good signature on {}:\n{out}",
            signed.display()
        );
    }
    Ok(())
}
