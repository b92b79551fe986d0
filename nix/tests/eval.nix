# Evaluates nix/module.nix (directly, or through flake.nix's nixosModules.default) with
# the stub module system, for crates/cairn/tests/it/nix_module.rs:
#
#   nix-instantiate --store dummy:// --eval --strict --json nix/tests/eval.nix \
#     --argstr dir /tmp/x --argstr package /tmp/x/pkg --argstr case example
#
# `case`: example (nix/tests/example.nix), flake (the same through the flake),
# minimal (defaults), root (user = "root"), inline-password and store-secret (both must
# fail with the module's assertion). A NixOS VM test (nixosTest) is not possible on the
# test machine: it needs nixpkgs and KVM; this evaluation is what can be checked there.
{ dir ? "/tmp/cairn-nix", package ? "/run/current-system/sw", case ? "example" }:
let
  stub = import ./stub.nix;
  pkgs = stub.pkgs // {
    cairn = { type = "derivation"; name = "cairn"; outPath = package; };
  };
  example = import ./example.nix { inherit dir; };
  minimal = {
    services.cairn = {
      enable = true;
      repositories.main = { url = "/srv/backup/restic"; password-file = "/etc/cairn/main.pass"; };
      plans.daily = { repository = "main"; paths = [ "/etc" ]; schedule = "daily"; };
    };
  };
  modules = {
    example = [ ../module.nix example ];
    minimal = [ ../module.nix minimal ];
    root = [ ../module.nix minimal { services.cairn.user = "root"; } ];
    inline-password = [ ../module.nix example {
      services.cairn.repositories.offsite.password = "hunter2-inline-secret";
    } ];
    store-secret = [ ../module.nix example {
      services.cairn.repositories.usb.password-file = stub.lib.mkForce "/nix/store/0000000000000000000000000000000-usb.pass";
      services.cairn.settings.web.peers = [
        { name = "nas"; url = "https://nas.lan:9816"; token-file = "/nix/store/0000000000000000000000000000000-nas.token"; }
      ];
    } ];
  };
  flake = (import ../../flake.nix).outputs {
    self = flake;
    nixpkgs.legacyPackages.x86_64-linux = stub.pkgs;
    nixpkgs.legacyPackages.aarch64-linux = stub.pkgs;
  };
  eval =
    if case == "flake" then stub.evalModules { modules = [ flake.nixosModules.default example ]; }
    else stub.evalModules { inherit pkgs; modules = modules.${case}; };
  c = eval.checked;
  unit = c.systemd.services.cairn;
  pkgAttrs = p: { inherit (p) pname version doCheck cargoBuildFlags; lockFile = toString p.cargoLock.lockFile; };
in
{
  text = c.services.cairn.generatedText;
  etcText = c.environment.etc."cairn/cairn.toml".source.text;
  serviceConfig = unit.serviceConfig;
  environment = unit.environment;
  inherit (unit) wantedBy after wants;
  restartTriggers = map (d: d.name) unit.restartTriggers;
  users = c.users or null;
  tmpfiles = c.systemd.tmpfiles.rules;
  firewall = (c.networking or { }).firewall.allowedTCPPorts or null;
  warnings = c.warnings;
  systemPackages = map (p: p.outPath) c.environment.systemPackages;
} // (if case == "flake" then {
  package = pkgAttrs flake.packages.x86_64-linux.default;
  overlayPackage = pkgAttrs (flake.overlays.default pkgs pkgs).cairn;
} else { })
