# A TOML writer in pure Nix (builtins only), for the cairn.toml the NixOS module generates.
#
# NixOS' `pkgs.formats.toml` writes TOML by running remarshal in a derivation; this writer
# needs nothing but the evaluator, so the generated file can be checked by
# `nix-instantiate --eval` alone (crates/cairn/tests/it/nix_module.rs does, then runs
# `cairn config check --offline` on the text).
#
# Rules: attribute names are sorted (deterministic output); `null` values and empty lists
# are left out (every cairn key treats a missing list like an empty one); a non-empty
# list of attribute sets becomes an array of tables (`[[plans.x.check]]`), any other list
# an inline array; nested attribute sets become `[a.b]` tables (inline tables inside
# inline arrays). Strings are basic strings with TOML's escapes. Functions, derivations
# and nulls inside lists are refused with the path of the value.
let
  inherit (builtins)
    attrNames concatStringsSep filter isAttrs isBool isFloat isInt isList isPath
    isString toJSON match replaceStrings genList fromJSON all length typeOf;

  hexDigit = n: builtins.substring n 1 "0123456789abcdef";
  hex2 = n: "${hexDigit (n / 16)}${hexDigit (n - (n / 16) * 16)}";
  # The control characters U+0001..U+001F and U+007F (Nix strings cannot hold U+0000),
  # built through JSON since Nix has no escape for most of them.
  controls = map (n: {
    char = fromJSON ''"\u00${hex2 n}"'';
    code = n;
  }) ((genList (n: n + 1) 31) ++ [ 127 ]);
  short = { "8" = "\\b"; "9" = "\\t"; "10" = "\\n"; "12" = "\\f"; "13" = "\\r"; };
  escapeFor = c: short.${toString c.code} or "\\u00${hex2 c.code}";

  quote = s:
    ''"${replaceStrings
      ([ "\\" ''"'' ] ++ map (c: c.char) controls)
      ([ "\\\\" ''\"'' ] ++ map escapeFor controls)
      s}"'';

  key = k: if match "[A-Za-z0-9_-]+" k != null then k else quote k;
  dotted = path: concatStringsSep "." (map key path);
  where = path: if path == [ ] then "the top level" else dotted path;

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";
  isTable = v: isAttrs v && !isDerivation v;
  isTableArray = v: isList v && v != [ ] && all isTable v;
  present = v: v != null && v != [ ];

  float = f:
    let s = toJSON f;
    in if match ".*[.eE].*" s != null then s else "${s}.0";

  scalar = path: v:
    if isBool v then (if v then "true" else "false")
    else if isInt v then toString v
    else if isFloat v then float v
    else if isString v then quote v
    else if isPath v then quote (toString v)
    else if isList v then
      "[${concatStringsSep ", " (map (x:
        if x == null then throw "toml: a list at ${where path} holds null, which TOML cannot write"
        else scalar path x) v)}]"
    else if isTable v then
      let ks = filter (k: present v.${k}) (attrNames v);
      in "{ ${concatStringsSep ", " (map (k: "${key k} = ${scalar (path ++ [ k ]) v.${k}}") ks)} }"
    else throw "toml: cannot write ${typeOf v} at ${where path}";

  # The body of a table at `path`: its plain keys, then its sub-tables and table arrays.
  body = path: t:
    let
      ks = filter (k: present t.${k}) (attrNames t);
      plain = filter (k: !(isTable t.${k}) && !(isTableArray t.${k})) ks;
      tables = filter (k: isTable t.${k}) ks;
      arrays = filter (k: isTableArray t.${k}) ks;
      lines = map (k: "${key k} = ${scalar (path ++ [ k ]) t.${k}}\n") plain;
      # A table's header is left out when it holds only tables (they define it).
      sub = k:
        let
          t' = t.${k};
          only = t' != { } && all (k': isTable t'.${k'} || isTableArray t'.${k'} || !(present t'.${k'})) (attrNames t');
        in "${if only then "" else "\n[${dotted (path ++ [ k ])}]\n"}${body (path ++ [ k ]) t'}";
      arr = k: concatStringsSep "" (map (e:
        "\n[[${dotted (path ++ [ k ])}]]\n${body (path ++ [ k ]) e}") t.${k});
    in concatStringsSep "" (lines ++ map sub tables ++ map arr arrays);

  toTOML = v:
    if !(isTable v) then throw "toml: the document must be an attribute set, not ${typeOf v}"
    else
      let text = body [ ] v;
      # A document starting with a table has a blank first line: drop it.
      in if builtins.substring 0 1 text == "\n" then builtins.substring 1 (builtins.stringLength text) text else text;

  # The NixOS option type of a TOML value (as `pkgs.formats.toml {}`'s, without needing
  # pkgs): a freeform type for the keys the module does not type itself.
  type = lib:
    let
      t = lib.types;
      value = t.nullOr (t.oneOf [ t.bool t.int t.float t.str (t.attrsOf value) (t.listOf value) ])
        // { description = "TOML value"; };
    in value;
in
{
  inherit toTOML type quote;
}
