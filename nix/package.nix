# The cairn package (callPackage style), used by flake.nix's packages and overlay.
#
# Built from the workspace with the locked dependencies of Cargo.lock (no git
# dependencies, so no outputHashes). Native code: ring, zstd-sys and the bundled SQLite
# of rusqlite compile C with stdenv's compiler; TLS is rustls (no OpenSSL). The test suite
# is not run here (doCheck = false): it starts real peers (restic, Garage, sshd,
# PostgreSQL, Chromium) that a Nix build sandbox does not have.
{ lib, rustPlatform, installShellFiles, src ? ../. }:
let
  workspace = builtins.fromTOML (builtins.readFile ../Cargo.toml);
  crate = builtins.fromTOML (builtins.readFile ../crates/cairn/Cargo.toml);
in
rustPlatform.buildRustPackage {
  pname = "cairn";
  version = workspace.workspace.package.version;
  inherit src;
  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "-p" "cairn" ];
  nativeBuildInputs = [ installShellFiles ];
  doCheck = false;
  # Man pages and completions come from the CLI definition itself.
  postInstall = ''
    mkdir -p man
    $out/bin/cairn man man
    installManPage man/*.1
    installShellCompletion --cmd cairn \
      --bash <($out/bin/cairn completions bash) \
      --zsh <($out/bin/cairn completions zsh) \
      --fish <($out/bin/cairn completions fish)
  '';
  meta = {
    description = crate.package.description;
    license = lib.licenses.asl20 or "Apache-2.0";
    mainProgram = "cairn";
    platforms = [ "x86_64-linux" "aarch64-linux" ];
  };
}
