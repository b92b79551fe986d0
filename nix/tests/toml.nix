# Data for the TOML writer's test: the same value as TOML (nix/lib/toml.nix) and as JSON
# (builtins.toJSON); the test parses both and compares them.
let
  toml = import ../lib/toml.nix;
  # Every control character Nix strings can hold (U+0001..U+001F, U+007F), through JSON.
  controls = builtins.fromJSON ''"\u0001\u0007\b\t\n\u000b\f\r\u001b\u001f\u007f"'';
  data = {
    plain = "a string";
    quotes = ''she said "hi" and \ left'';
    inherit controls;
    unicode = "café ✓ 🦀";
    "key with spaces" = "x";
    "dotted.key" = "y";
    "" = "empty key";
    int = -42;
    big = 9007199254740993;
    float = 1.0;
    frac = 0.125;
    yes = true;
    no = false;
    list = [ 1 2 3 ];
    strings = [ "a" "b\"c" ];
    mixed = [ 1 "one" { inline = "table"; n = [ true ]; } ];
    nested.deeper.deepest = { k = "v"; };
    empty = { };
    only.tables.a = 1;
    array = [ { name = "first"; sub.x = 1; } { name = "second"; } ];
    skipped = null;
    nothing = [ ];
  };
  # What a TOML reader sees: nulls and empty lists left out.
  expected = builtins.removeAttrs data [ "skipped" "nothing" ];
in
{
  toml = toml.toTOML data;
  json = builtins.toJSON expected;
}
