# NixOS module: `services.cairn` runs `cairn daemon` (scheduled plans, web UI, metrics)
# from a cairn.toml generated out of the options below.
#
# The four option sets mirror cairn.toml's four tables, with cairn's own key names
# (kebab-case, as in the README): `services.cairn.settings` is `[settings]`,
# `repositories.NAME` is `[repositories.NAME]`, `sources.NAME`, `plans.NAME`. The keys
# that matter for the service (paths it writes, secrets, the web port) are typed; every
# other cairn key is accepted as it is (freeform) and checked by cairn itself
# (`cairn config check` lists every mistake with its place).
#
# Secrets by path only: a repository's password comes from `password-file`,
# `password-command`, `password-env` or `password-credential` (a systemd credential, its
# file given in `services.cairn.credentials`); an inline `password` is refused by an
# assertion, and so is a secret path inside the Nix store (world-readable).
#
# The service has the sandbox of `cairn systemd generate` (systemd.rs: `sandbox`): the
# same directives, and ReadWritePaths computed like `writable_paths` for every plan.
# crates/cairn/tests/it/nix_module.rs compares the two.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf mkMerge types;
  inherit (builtins)
    attrNames attrValues concatMap concatStringsSep elem elemAt filter length
    listToAttrs map match sort stringLength substring;

  cfg = config.services.cairn;
  toml = import ./lib/toml.nix;
  value = toml.type lib;
  freeform = types.attrsOf value;

  configPath = "/etc/cairn/cairn.toml";
  storeDir = builtins.storeDir or "/nix/store";

  hasPrefix = p: s: substring 0 (stringLength p) s == p;
  hasSuffix = x: s:
    stringLength s >= stringLength x
    && substring (stringLength s - stringLength x) (stringLength x) s == x;
  unique = foldl (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
  foldl = builtins.foldl';

  # A path to a file holding a secret: absolute, read at run time, never copied into the
  # store (a Nix path value is refused by `types.str`).
  secretPath = description: mkOption {
    type = types.nullOr types.str;
    default = null;
    inherit description;
  };
  strOpt = description: mkOption {
    type = types.nullOr types.str;
    default = null;
    inherit description;
  };
  strList = description: mkOption {
    type = types.listOf types.str;
    default = [ ];
    inherit description;
  };

  hooksModule = {
    freeformType = freeform;
    options = listToAttrs (map (n: {
      name = n;
      value = strList "Commands (run with `sh -c`): see cairn's README, Plans.";
    }) [ "before" "after" "success" "failure" "finally" "before-restore" "after-restore" ])
    // { timeout = strOpt "Time limit per command (default \"5m\")."; };
  };

  snapshotOpt = mkOption {
    type = types.nullOr (types.submodule {
      options.kind = mkOption {
        type = types.enum [ "btrfs" "zfs" "lvm" ];
        description = "Filesystem snapshot made for each run.";
      };
    });
    default = null;
    description = "Back up from a read-only filesystem snapshot (needs `user = \"root\"`).";
  };

  filterOptions = {
    exclude = strList "restic exclude patterns.";
    exclude-file = strList "Files of exclude patterns.";
  };

  repositoryModule = { name, ... }: {
    freeformType = freeform;
    options = {
      url = mkOption {
        type = types.str;
        description = "restic repository URL of `${name}`: a path, sftp:, s3:, b2:, rest:, rclone:.";
      };
      password-file = secretPath "File holding the repository password (readable by `services.cairn.user`).";
      password-command = strOpt "Command printing the password.";
      password-env = strOpt "Environment variable holding the password.";
      password-credential = strOpt "systemd credential holding the password; its file in `services.cairn.credentials`.";
      env-file = secretPath "`KEY=VALUE` file with backend credentials (AWS_*, B2_*).";
      env-credential = strOpt "systemd credential in env-file format; its file in `services.cairn.credentials`.";
      env-command = strOpt "Command printing backend credentials as `KEY=VALUE` lines.";
      cache-dir = strOpt "Local cache of this repository (default `services.cairn.cacheDir`).";
      env = mkOption {
        type = types.nullOr (types.attrsOf types.str);
        default = null;
        description = "Non-secret environment for the backend (AWS_DEFAULT_REGION); secrets go in env-file.";
      };
    };
  };

  sourceModule = {
    freeformType = freeform;
    options = filterOptions // {
      paths = strList "Absolute paths to back up.";
      sqlite = strList "Live SQLite databases, copied with SQLite's online backup API.";
      snapshot = snapshotOpt;
      hooks = mkOption {
        type = types.nullOr (types.submodule hooksModule);
        default = null;
        description = "Commands around the backups of plans including this source.";
      };
    };
  };

  planModule = {
    freeformType = freeform;
    options = filterOptions // {
      repository = mkOption {
        type = types.str;
        description = "Name of a `services.cairn.repositories` entry.";
      };
      sources = strList "Names of `services.cairn.sources` entries; `*` and `prefix-*` select by name.";
      paths = strList "Paths backed up besides the sources'.";
      copy-to = strList "Repositories getting a copy of each new snapshot.";
      schedule = strOpt "When to run: `daily`, `03:00`, `Mon..Fri 02:30`, cron `30 2 * * *`.";
      snapshot = snapshotOpt;
      retention = mkOption {
        type = types.nullOr (types.submodule {
          freeformType = freeform;
          options = listToAttrs (map (n: {
            name = n;
            value = mkOption {
              type = types.nullOr types.int;
              default = null;
              description = "Snapshots to keep (-1: all).";
            };
          }) [ "keep-last" "keep-hourly" "keep-daily" "keep-weekly" "keep-monthly" "keep-yearly" ])
          // { keep-within = strOpt "Keep everything newer than this (\"30d\")."; };
        });
        default = null;
        description = "Which snapshots of this plan to keep.";
      };
      hooks = mkOption {
        type = types.nullOr (types.submodule hooksModule);
        default = null;
        description = "Commands around the plan's runs.";
      };
    };
  };

  webUserModule = {
    options = {
      password-hash-file = secretPath "File holding the user's argon2id hash (`cairn web hash-password`).";
      role = mkOption {
        type = types.enum [ "viewer" "admin" ];
        description = "`viewer` sees, browses and downloads; `admin` also restores and starts runs.";
      };
    };
  };

  settingsModule = {
    freeformType = freeform;
    options = {
      state-dir = mkOption {
        type = types.str;
        default = "/var/lib/cairn";
        description = "History database and state; created 0700, owned by `services.cairn.user`.";
      };
      web = mkOption {
        type = types.nullOr (types.submodule {
          freeformType = freeform;
          options = {
            listen = mkOption {
              type = types.str;
              default = "127.0.0.1:9816";
              description = "Address of the web UI.";
            };
            users = mkOption {
              type = types.attrsOf (types.submodule webUserModule);
              default = { };
              description = "Who may log in, by user name.";
            };
            tls-key = secretPath "PEM private key (with tls-cert: HTTPS).";
            tokens-file = secretPath "Bearer tokens for scripts, lines `NAME ROLE TOKEN`.";
          };
        });
        default = null;
        description = "`[settings.web]`: the web UI and HTTP API, served by the daemon.";
      };
      metrics = mkOption {
        type = types.nullOr (types.submodule {
          freeformType = freeform;
          options.textfile = strOpt "node-exporter textfile written after every run.";
        });
        default = null;
        description = "Prometheus metrics (`listen`, `textfile`).";
      };
    };
  };

  # The document: the four tables (an empty one left out), without nulls and empty lists
  # (the writer drops them).
  document = lib.filterAttrs (_: t: t != { }) {
    settings = cfg.settings;
    repositories = cfg.repositories;
    sources = cfg.sources;
    plans = cfg.plans;
  };
  text = toml.toTOML document;
  configFile = pkgs.writeText "cairn.toml" text;

  # --- What the daemon writes: `writable_paths` of systemd.rs, over every plan.
  remoteSchemes = [ "rest" "s3" "b2" "sftp" "rclone" "azure" "gs" "swift" ];
  localPath = url:
    let m = match "([^:]*):(.*)" url;
    in if m == null then url
    else if elemAt m 0 == "local" then elemAt m 1
    else if match ".*/.*" (elemAt m 0) == null && stringLength (elemAt m 0) > 1
      && elem (elemAt m 0) remoteSchemes then null
    else url;
  inherit (builtins) dirOf;
  ancestors = p: if p == "/" then [ "/" ] else [ p ] ++ ancestors (dirOf p);
  join = dir: name: if dir == "/" then "/${name}" else "${dir}/${name}";
  planSources = plan: unique (concatMap (pat:
    if hasSuffix "*" pat
    then filter (n: hasPrefix (substring 0 (stringLength pat - 1) pat) n) (attrNames cfg.sources)
    else filter (n: n == pat) (attrNames cfg.sources)) plan.sources);
  snapshotPaths = kind: paths:
    if kind == "btrfs" then concatMap (p: map (d: join d ".cairn-snapshots") (ancestors p)) paths
    else if kind == "lvm" then [ "/etc/lvm/archive" "/etc/lvm/backup" "/run/lock/lvm" "/run/lvm" "/run/mount" ]
    else [ ];
  planWrites = plan:
    let
      srcs = map (n: cfg.sources.${n}) (planSources plan);
      repos = filter (r: r != null) (map (n: cfg.repositories.${n} or null) ([ plan.repository ] ++ plan.copy-to));
    in
    map (r: let l = localPath r.url; in
      if l != null then l
      else if r.cache-dir != null then r.cache-dir
      else cfg.cacheDir) repos
    ++ (if plan.snapshot != null then snapshotPaths plan.snapshot.kind plan.paths else [ ])
    ++ concatMap (s: if s.snapshot != null then snapshotPaths s.snapshot.kind s.paths else [ ]) srcs
    ++ concatMap (s: map dirOf s.sqlite) srcs;
  # The shortest list covering the paths (a path under a listed one is dropped).
  covering = paths:
    foldl (out: p: if builtins.any (o: p == o || hasPrefix (if o == "/" then "/" else "${o}/") p) out then out else out ++ [ p ])
      [ ] (sort builtins.lessThan (unique paths));
  metricsDir =
    if cfg.settings.metrics != null && (cfg.settings.metrics.textfile or null) != null
    then [ (dirOf cfg.settings.metrics.textfile) ] else [ ];
  writable = covering ([ cfg.settings.state-dir ] ++ concatMap planWrites (attrValues cfg.plans)
    ++ metricsDir ++ cfg.readWritePaths);
  # One word of a unit setting, as systemd.rs's `word` writes it.
  unitWord = s:
    let w = builtins.replaceStrings [ "%" ] [ "%%" ] s;
    in if match ''.*[[:space:]"'\\].*'' w != null
    then ''"${builtins.replaceStrings [ "\\" ''"'' "\n" "\t" ] [ "\\\\" ''\"'' "\\n" "\\t" ] w}"''
    else w;

  # --- Credentials: the names the repositories use, with their files when given.
  credentialNames = unique (concatMap (r:
    filter (x: x != null) [ r.password-credential r.env-credential ]) (attrValues cfg.repositories));
  loadCredential = map (n:
    if cfg.credentials ? ${n} then "${n}:${cfg.credentials.${n}}" else n) credentialNames;

  webPort =
    let m = match ".*:([0-9]+)" cfg.settings.web.listen;
    in if m == null then null else builtins.fromJSON (elemAt m 0);

  # --- Checks.
  repoAssertions = concatMap (name:
    let r = cfg.repositories.${name};
        sources = filter (k: r.${k} != null) [ "password-file" "password-command" "password-env" "password-credential" ];
    in [
      {
        assertion = !(r ? password);
        message = "services.cairn.repositories.${name}.password: passwords never go in the config (it is world-readable in the Nix store). Put it in a file readable by ${cfg.user} only and set password-file = \"/run/secrets/${name}.pass\" (or password-credential with services.cairn.credentials).";
      }
      {
        assertion = length sources == 1;
        message = "services.cairn.repositories.${name}: set exactly one of password-file, password-command, password-env, password-credential (found ${if sources == [ ] then "none" else concatStringsSep ", " sources}).";
      }
    ]) (attrNames cfg.repositories);
  secretPaths =
    concatMap (name: let r = cfg.repositories.${name}; in map (k: {
      where = "repositories.${name}.${k}";
      path = r.${k};
    }) [ "password-file" "env-file" ]) (attrNames cfg.repositories)
    ++ (if cfg.settings.web == null then [ ] else
      [ { where = "settings.web.tls-key"; path = cfg.settings.web.tls-key; }
        { where = "settings.web.tokens-file"; path = cfg.settings.web.tokens-file; } ]
      ++ map (u: { where = "settings.web.users.${u}.password-hash-file"; path = cfg.settings.web.users.${u}.password-hash-file; })
        (attrNames cfg.settings.web.users)
      # [[settings.web.peers]] (freeform): each one's token-file.
      ++ map (p: { where = "settings.web.peers (${p.name or "?"}).token-file"; path = p.token-file or null; })
        (cfg.settings.web.peers or [ ]))
    ++ map (n: { where = "credentials.${n}"; path = cfg.credentials.${n}; }) (attrNames cfg.credentials);
  pathAssertions = map (s: {
    assertion = s.path == null || (hasPrefix "/" s.path && !(hasPrefix "${storeDir}/" s.path));
    message = "services.cairn.${s.where} = \"${toString s.path}\": a secret must be an absolute path outside the Nix store (the store is world-readable), e.g. \"/run/secrets/...\" or \"/etc/cairn/...\".";
  }) secretPaths;
  planAssertions = concatMap (name:
    let p = cfg.plans.${name}; in map (r: {
      assertion = cfg.repositories ? ${r};
      message = "services.cairn.plans.${name}: unknown repository `${r}` (defined: ${concatStringsSep ", " (attrNames cfg.repositories)}).";
    }) ([ p.repository ] ++ p.copy-to)) (attrNames cfg.plans);
  usesSnapshots = builtins.any (x: x.snapshot != null) (attrValues cfg.sources ++ attrValues cfg.plans);
in
{
  options.services.cairn = {
    enable = mkEnableOption "cairn, declarative backups in the restic repository format (`cairn daemon`)";

    package = mkOption {
      type = types.package;
      default = pkgs.cairn or (throw "services.cairn.package: cairn is not in nixpkgs; import the flake's nixosModules.default (it adds its overlay), or set services.cairn.package");
      defaultText = lib.literalExpression "pkgs.cairn";
      description = "The cairn package.";
    };

    user = mkOption {
      type = types.str;
      default = "cairn";
      description = ''
        User running the daemon. The default `cairn` system user reads every file through
        CAP_DAC_READ_SEARCH (like restic's "backup without root" setup) and writes only its
        state, caches and local repositories. Filesystem snapshots (btrfs, zfs, lvm), database
        dumps as another user, restores to other owners and hooks that manage services need
        `"root"`.
      '';
    };

    group = mkOption {
      type = types.str;
      default = "cairn";
      description = "Group of the daemon; give it read access to secret files (mode 0640).";
    };

    cacheDir = mkOption {
      type = types.str;
      default = "/var/cache/cairn";
      description = "Cache of remote repositories without their own `cache-dir` (CAIRN_CACHE_DIR).";
    };

    credentials = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { b2-pass = "/run/secrets/b2-pass"; };
      description = "Files of the systemd credentials named by `password-credential`/`env-credential` (LoadCredential=NAME:FILE); a name without a file here is looked up in /etc/credstore.";
    };

    readWritePaths = mkOption {
      type = types.listOf types.str;
      default = [ ];
      description = "More paths the daemon may write: where hooks write, targets of restores started from the web UI.";
    };

    extraPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
      description = "Tools on the daemon's PATH (btrfs-progs, postgresql for pg_dump, sqlite for restore-test commands...).";
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the web UI's port (from settings.web.listen) in the firewall.";
    };

    settings = mkOption {
      type = types.submodule settingsModule;
      default = { };
      description = "`[settings]` of cairn.toml (state-dir, host, metrics, notify, web).";
    };

    repositories = mkOption {
      type = types.attrsOf (types.submodule repositoryModule);
      default = { };
      description = "`[repositories.NAME]`: where snapshots are stored.";
    };

    sources = mkOption {
      type = types.attrsOf (types.submodule sourceModule);
      default = { };
      description = "`[sources.NAME]`: what to back up, usually one per service.";
    };

    plans = mkOption {
      type = types.attrsOf (types.submodule planModule);
      default = { };
      description = "`[plans.NAME]`: sources into a repository on a schedule, with retention, checks, hooks.";
    };

    configFile = mkOption {
      type = types.unspecified;
      readOnly = true;
      internal = true;
      default = configFile;
      description = "The generated cairn.toml (installed as /etc/cairn/cairn.toml).";
    };

    generatedText = mkOption {
      type = types.str;
      readOnly = true;
      internal = true;
      default = text;
      description = "The text of the generated cairn.toml.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions = repoAssertions ++ pathAssertions ++ planAssertions ++ [
        {
          assertion = !cfg.openFirewall || (cfg.settings.web != null && webPort != null);
          message = "services.cairn.openFirewall needs services.cairn.settings.web (with listen = \"ADDRESS:PORT\").";
        }
      ];
      warnings = lib.optional (usesSnapshots && cfg.user != "root")
        "services.cairn: btrfs/zfs/lvm snapshots need root: set services.cairn.user = \"root\".";

      environment.etc."cairn/cairn.toml".source = configFile;
      environment.systemPackages = [ cfg.package ];

      systemd.tmpfiles.rules = [
        "d ${cfg.settings.state-dir} 0700 ${cfg.user} ${cfg.group} -"
        "d ${cfg.cacheDir} 0700 ${cfg.user} ${cfg.group} -"
      ];

      systemd.services.cairn = {
        description = "cairn backup daemon: scheduled plans, web UI, metrics";
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ];
        wants = [ "network-online.target" ];
        path = cfg.extraPackages;
        restartTriggers = [ configFile ];
        environment.CAIRN_CACHE_DIR = cfg.cacheDir;
        serviceConfig = {
          Type = "simple";
          ExecStart = "${cfg.package}/bin/cairn --config ${configPath} daemon";
          Restart = "on-failure";
          RestartSec = "30s";
          User = cfg.user;
          Group = cfg.group;
          LoadCredential = loadCredential;
          # The sandbox of `cairn systemd generate` (systemd.rs `sandbox`), directive for
          # directive; ReadWritePaths as `writable_paths` over every plan.
          ProtectSystem = "strict";
          ReadWritePaths = map (p: unitWord "-${p}") writable;
          ProtectHome = "read-only";
          PrivateTmp = "true";
          NoNewPrivileges = "true";
          ProtectKernelTunables = "true";
          ProtectKernelModules = "true";
          ProtectControlGroups = "true";
          RestrictSUIDSGID = "true";
          LockPersonality = "true";
          RestrictRealtime = "true";
          # A stop sends SIGTERM: cairn removes its locks and runs the plans' finally hooks.
          KillMode = "mixed";
          TimeoutStopSec = "5min";
        } // lib.optionalAttrs (cfg.user != "root") {
          AmbientCapabilities = [ "CAP_DAC_READ_SEARCH" ];
          CapabilityBoundingSet = [ "CAP_DAC_READ_SEARCH" ];
        };
      };
    }
    (mkIf (cfg.settings.state-dir == "/var/lib/cairn") {
      systemd.services.cairn.serviceConfig = {
        StateDirectory = "cairn";
        StateDirectoryMode = "0700";
      };
    })
    (mkIf (cfg.cacheDir == "/var/cache/cairn") {
      systemd.services.cairn.serviceConfig = {
        CacheDirectory = "cairn";
        CacheDirectoryMode = "0700";
      };
    })
    (mkIf (cfg.user == "cairn") {
      users.users.cairn = {
        isSystemUser = true;
        group = cfg.group;
        home = cfg.settings.state-dir;
        description = "cairn backup daemon";
      };
    })
    (mkIf (cfg.group == "cairn") {
      users.groups.cairn = { };
    })
    (mkIf (cfg.openFirewall && cfg.settings.web != null && webPort != null) {
      networking.firewall.allowedTCPPorts = [ webPort ];
    })
  ]);
}
