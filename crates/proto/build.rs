//! Compiles every `.proto` file under `<workspace>/proto` with `protox` (a pure-Rust
//! protobuf compiler, so no system `protoc` is needed on a fresh machine), writes the
//! encoded `FileDescriptorSet` to `OUT_DIR/vitals_descriptor.bin` (all packages) and
//! `OUT_DIR/<package>.descriptor.bin` (one per package) for server reflection, and generates prost messages plus tonic clients and servers from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Collects the `.proto` files below `dir`, as paths relative to `root`, sorted so the
/// generated output does not depend on directory iteration order.
fn proto_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path.strip_prefix(root).map_err(std::io::Error::other)?;
            // protox wants import-style paths with forward slashes.
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);

    let mut files = Vec::new();
    proto_files(&proto_root, &proto_root, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto files found under {}", proto_root.display()).into());
    }

    let mut compiler = protox::Compiler::new([&proto_root])?;
    compiler
        .include_source_info(true)
        .include_imports(true)
        .open_files(&files)?;
    std::fs::write(
        out_dir.join("vitals_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;

    // One descriptor set per package too (its files plus their imports), so that a
    // single-service binary can serve reflection for its own API only.
    let mut packages: BTreeMap<String, Vec<&String>> = BTreeMap::new();
    for file in &files {
        let dir = file.rsplit_once('/').map_or("", |(dir, _)| dir);
        packages
            .entry(dir.replace('/', "."))
            .or_default()
            .push(file);
    }
    for (package, package_files) in &packages {
        let mut c = protox::Compiler::new([&proto_root])?;
        c.include_source_info(true)
            .include_imports(true)
            .open_files(package_files)?;
        std::fs::write(
            out_dir.join(format!("{package}.descriptor.bin")),
            c.encode_file_descriptor_set(),
        )?;
    }

    // `compile_fds` ignores `file_descriptor_set_path`; the sets are written above.
    // The vendored googleapis packages live at `crate::google`, above the Vitals
    // packages (which sit at `crate::<service>` without a `vitals` level), so the Vitals
    // code names them by absolute path.
    tonic_prost_build::configure()
        .extern_path(".google.longrunning", "crate::google::longrunning")
        .extern_path(".google.rpc", "crate::google::rpc")
        .build_client(true)
        .build_server(true)
        .compile_fds(compiler.file_descriptor_set())?;

    // prost leaves out the messages of extern packages: generate the vendored google
    // packages on their own (this rewrites `google.longrunning.rs` whole).
    let mut google = protox::Compiler::new([&proto_root])?;
    google.include_imports(true).open_files([
        "google/rpc/status.proto",
        "google/longrunning/operations.proto",
    ])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(google.file_descriptor_set())?;

    println!("cargo:rerun-if-changed={}", proto_root.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    Ok(())
}
