# An example NixOS configuration of services.cairn: two repositories (a local disk and
# an S3 bucket), three sources (one from Btrfs snapshots: the module warns that it needs
# root), two plans, the web UI with two users, metrics. Every file it names is under
# `dir`, so that the test can create them and run `cairn config check --offline` on the
# generated cairn.toml.
{ dir }:
{ ... }:
{
  services.cairn = {
    enable = true;
    cacheDir = "${dir}/cache";
    openFirewall = true;
    credentials.offsite-env = "${dir}/secrets/offsite.env";

    settings = {
      state-dir = "${dir}/state";
      host = "nas";
      metrics = {
        listen = "127.0.0.1:9898";
        textfile = "${dir}/prom/cairn.prom";
      };
      notify.ntfy = "https://ntfy.example.org/backups";
      web = {
        listen = "0.0.0.0:9816";
        session-timeout = "8h";
        users.alice = {
          role = "admin";
          password-hash-file = "${dir}/secrets/alice.hash";
        };
        users.bob = {
          role = "viewer";
          password-hash-file = "${dir}/secrets/bob.hash";
        };
      };
    };

    repositories.usb = {
      url = "${dir}/usb disk/restic";
      password-file = "${dir}/secrets/usb.pass";
    };
    repositories.offsite = {
      url = "s3:https://s3.example.org/backups/nas";
      password-file = "${dir}/secrets/offsite.pass";
      env-credential = "offsite-env";
      env.AWS_DEFAULT_REGION = "garage";
      options."s3.connections" = "8";
      limit-upload = 5000;
    };

    sources.hass = {
      paths = [ "${dir}/data/hass" ];
      exclude = [ "*.log" "tts" ];
      sqlite = [ "${dir}/data/hass/home-assistant_v2.db" ];
      hooks.before = [ "echo stopping hass" ];
    };
    sources.photos = {
      paths = [ "${dir}/data/photos" ];
      exclude-caches = true;
      one-file-system = true;
    };
    sources.docs-home = {
      paths = [ "${dir}/data/home" ];
      exclude-if-present = [ ".nobackup" ];
      snapshot.kind = "btrfs";
    };

    plans.nightly = {
      repository = "offsite";
      sources = [ "*" ];
      schedule = "03:00";
      retention = { keep-daily = 7; keep-weekly = 4; keep-monthly = 6; };
      prune = "weekly";
      check = [
        { schedule = "weekly"; read-data-subset = "1/4"; }
        { schedule = "quarterly"; read-data-subset = "all"; }
      ];
      copy-to = [ "usb" ];
      tags = [ "nightly" "%Y-%m" ];
      max-age = "26h";
      nice = 10;
      ionice = "idle";
      restore-test = { schedule = "monthly"; mode = "sample"; files = 20; };
      hooks = {
        before = [ "echo 'before nightly'" ];
        finally = [ "echo done" ];
        timeout = "5m";
      };
    };
    plans.docs = {
      repository = "usb";
      sources = [ "docs-*" ];
      schedule = "hourly";
      retention.keep-hourly = 24;
      retention.keep-within = "7d";
    };
  };
}
