{
  # cairn as a Nix flake: the package, the NixOS module (services.cairn) and an overlay.
  #
  #   inputs.cairn.url = "github:OWNER/cairn";   # or path:/src/cairn
  #   nixosConfigurations.host = nixpkgs.lib.nixosSystem {
  #     modules = [ cairn.nixosModules.default ./backup.nix ];
  #   };
  #
  # nix/module.nix says what the options are; nix/tests/ evaluates the module (the test
  # machine has no nixpkgs: the package itself is not built there).
  description = "cairn: declarative backups in the restic repository format";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: builtins.listToAttrs (map (system: {
        name = system;
        value = f system nixpkgs.legacyPackages.${system};
      }) systems);
      # The workspace without build output and VCS data.
      src = builtins.path {
        path = ./.;
        name = "cairn-source";
        filter = path: type:
          let base = baseNameOf path; in
          !(type == "directory" && (base == "target" || base == ".git" || base == "fuzz"));
      };
    in
    {
      packages = forAll (system: pkgs: {
        default = pkgs.callPackage ./nix/package.nix { inherit src; };
        cairn = self.packages.${system}.default;
      });

      overlays.default = final: prev: {
        cairn = final.callPackage ./nix/package.nix { inherit src; };
      };

      # The module, with the overlay so that services.cairn.package defaults to this
      # flake's cairn.
      nixosModules.default = {
        imports = [ ./nix/module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };
      nixosModules.cairn = self.nixosModules.default;
    };
}
