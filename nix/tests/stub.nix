# A minimal stand-in for the NixOS module system and nixpkgs, enough to evaluate
# nix/module.nix with `nix-instantiate --eval` on a machine without nixpkgs (the test
# machine has Debian's nix-bin and no network to fetch nixpkgs).
#
# What it does like NixOS: options with types that are checked (bool, int, float, str,
# enum, package, nullOr, listOf, attrsOf, submodule with freeformType, oneOf/either,
# unspecified); definitions merged across modules with mkIf (conditions pushed down to
# the attributes, so `config = mkIf cfg.enable {...}` is lazy as in NixOS), mkMerge and
# mkOverride/mkDefault/mkForce priorities; option defaults; imports; assertions checked
# by `checked`. Options the module does not declare (systemd.services, users, ...) are
# merged generically: attribute sets recursively, lists concatenated, other values must
# agree. What it does not do: option documentation, `_module.args`, disabledModules, type
# coercions, and anything of nixpkgs beyond `writeText` and `callPackage`.
let
  B = builtins;
  inherit (B) attrNames concatMap filter foldl' isAttrs isList isFunction isString isPath
    length head mapAttrs zipAttrsWith removeAttrs concatStringsSep toJSON typeOf;

  showLoc = loc: concatStringsSep "." loc;
  show = v: if isAttrs v || isList v || isFunction v then "<${typeOf v}>" else toJSON v;

  # --- Properties.
  mkIf = condition: content: { _type = "if"; inherit condition content; };
  mkMerge = contents: { _type = "merge"; inherit contents; };
  mkOverride = priority: content: { _type = "override"; inherit priority content; };
  mkDefault = mkOverride 1000;
  mkForce = mkOverride 50;
  kind = v: if isAttrs v then v._type or null else null;

  # mkMerge flattened and mkIf/mkOverride pushed down to the attributes, without
  # evaluating a condition.
  pushDown = v:
    let k = kind v; in
    if k == "merge" then concatMap pushDown v.contents
    else if k == "if" then map (mkIf v.condition) (pushDown v.content)
    else if k == "override" then map (mkOverride v.priority) (pushDown v.content)
    else [ v ];
  inner = v: let k = kind v; in if k == "if" || k == "override" then inner v.content else v;
  rewrap = v: x:
    let k = kind v; in
    if k == "if" then mkIf v.condition (rewrap v.content x)
    else if k == "override" then mkOverride v.priority (rewrap v.content x)
    else x;
  # Conditions evaluated: a list of { priority; value; }.
  discharge = v:
    let k = kind v; in
    if k == "merge" then concatMap discharge v.contents
    else if k == "if" then (if v.condition then discharge v.content else [ ])
    else if k == "override" then map (d: d // { priority = v.priority; }) (discharge v.content)
    else [ { priority = 100; value = v; } ];
  dischargeAll = defs:
    let
      ds = concatMap discharge defs;
      best = foldl' (m: d: if d.priority < m then d.priority else m) 9999 ds;
    in map (d: d.value) (filter (d: d.priority == best) ds);

  isDerivation = v: isAttrs v && (v.type or null) == "derivation";
  isPlainAttrs = v: isAttrs v && kind v == null && !isDerivation v;

  # Definitions of the attributes of `defs` (each an attribute set, maybe wrapped).
  children = loc: defs:
    zipAttrsWith (n: vs: vs) (map (d:
      let i = inner d; in
      if isPlainAttrs i then mapAttrs (n: x: rewrap d x) i
      else throw "stub: a definition of `${showLoc loc}` is not an attribute set: ${show i}")
      (concatMap pushDown defs));

  mergeEqual = loc: defs:
    if defs == [ ] then throw "stub: no definition for `${showLoc loc}`"
    else if B.all (d: d == head defs) defs then head defs
    else throw "The option `${showLoc loc}' has conflicting definition values: ${concatStringsSep ", " (map show defs)}";

  # --- Types: { name; description; check; merge = loc: values -> value; }.
  mkType = name: description: check: {
    inherit name description check;
    merge = loc: defs: mergeEqual loc defs;
  };
  checked = t: loc: defs:
    let bad = filter (d: !t.check d) defs; in
    if bad != [ ] then throw "A definition for option `${showLoc loc}' is not of type `${t.description}'. Definition value: ${show (head bad)}"
    else t.merge loc defs;

  types = rec {
    bool = mkType "bool" "boolean" B.isBool;
    int = mkType "int" "signed integer" B.isInt;
    float = mkType "float" "floating point number" B.isFloat;
    str = mkType "str" "string" isString;
    path = mkType "path" "path" (v: isPath v || (isString v && B.substring 0 1 v == "/"));
    port = mkType "port" "16 bit unsigned integer" (v: B.isInt v && v >= 0 && v <= 65535);
    package = mkType "package" "package" (v: isDerivation v || (isAttrs v && v ? outPath) || isString v || isPath v);
    unspecified = { name = "unspecified"; description = "unspecified value"; check = _: true; merge = genericMerge; };
    anything = unspecified;
    enum = values: mkType "enum" "one of ${concatStringsSep ", " (map toJSON values)}" (v: B.elem v values);
    nullOr = t: {
      name = "nullOr";
      description = "null or ${t.description}";
      check = v: v == null || t.check v;
      merge = loc: defs:
        if B.all (d: d == null) defs then null
        else if B.any (d: d == null) defs then throw "The option `${showLoc loc}' is defined both null and not null"
        else checked t loc defs;
    };
    listOf = t: {
      name = "listOf";
      description = "list of ${t.description}";
      check = isList;
      merge = loc: defs: B.genList (i: checked t (loc ++ [ "[${toString i}]" ]) [ (B.elemAt (B.concatLists defs) i) ])
        (length (B.concatLists defs));
      elemType = t;
    };
    attrsOf = t: {
      name = "attrsOf";
      description = "attribute set of ${t.description}";
      check = isAttrs;
      merge = loc: defs: mapAttrs (n: ds: checked t (loc ++ [ n ]) (dischargeAll ds)) (children loc defs);
      elemType = t;
    };
    either = a: b: {
      name = "either";
      description = "${a.description} or ${b.description}";
      check = v: a.check v || b.check v;
      merge = loc: defs:
        if B.all a.check defs then a.merge loc defs
        else if B.all b.check defs then b.merge loc defs
        else throw "The option `${showLoc loc}' has definitions of different types";
    };
    oneOf = ts: foldl' either (head ts) (B.tail ts);
    submodule = m: {
      name = "submodule";
      description = "submodule";
      check = v: isAttrs v || isFunction v;
      merge = loc: defs:
        let
          name = B.elemAt loc (length loc - 1);
          mod = normalize (if isFunction m then m { inherit name; config = result; lib = stubLib; } else m);
          call = d: if isFunction d then d { inherit name; config = result; lib = stubLib; } else d;
          result = evalTree loc mod.options (map call defs ++ [ mod.config ]) (mod.freeformType or null);
        in result;
    };
  };

  # Undeclared options: attribute sets merged recursively, lists concatenated.
  genericMerge = loc: defs:
    let pushed = concatMap pushDown defs; in
    if pushed != [ ] && B.all (d: isPlainAttrs (inner d)) pushed
    then
      let
        kids = children loc defs;
        # Below the top level, an attribute whose definitions are all switched off (mkIf
        # false) is absent, as in NixOS.
        on = if loc == [ ] then kids
          else B.removeAttrs kids (filter (n: concatMap discharge kids.${n} == [ ]) (attrNames kids));
      in mapAttrs (n: ds: genericMerge (loc ++ [ n ]) ds) on
    else
      let vs = dischargeAll defs; in
      # Every definition switched off by its mkIf: as if undefined.
      if vs == [ ] then null
      else if B.all isList vs then B.concatLists vs
      else mergeEqual loc vs;

  isOption = v: isAttrs v && (v._type or null) == "option";

  evalOption = loc: opt: defs:
    let
      vs = dischargeAll defs;
      value =
        if vs != [ ] then checked opt.type loc vs
        else if opt ? default then checked opt.type loc [ opt.default ]
        else throw "The option `${showLoc loc}' is used but not defined.";
    in if opt ? apply then opt.apply value else value;

  # Declared options with their values, plus the undeclared names: freeform (typed),
  # generic (the top level, standing for the NixOS options this stub does not declare),
  # or an error.
  evalTree = loc: decls: defs: freeform:
    let
      kids = children loc defs;
      declared = mapAttrs (n: d:
        if isOption d then evalOption (loc ++ [ n ]) d (kids.${n} or [ ])
        else evalTree (loc ++ [ n ]) d (kids.${n} or [ ]) null) decls;
      rest = removeAttrs kids (attrNames decls);
      extra = mapAttrs (n: ds:
        if freeform == "generic" then genericMerge (loc ++ [ n ]) ds
        else if freeform != null then checked freeform.elemType (loc ++ [ n ]) (dischargeAll ds)
        else throw "The option `${showLoc (loc ++ [ n ])}' does not exist.") rest;
    in extra // declared;

  # A module as { imports; options; config; freeformType?; }.
  normalize = m:
    if m ? options || m ? config then {
      imports = m.imports or [ ];
      options = m.options or { };
      config = m.config or { };
    } // (if m ? freeformType then { inherit (m) freeformType; } else { })
    else {
      imports = m.imports or [ ];
      options = { };
      config = removeAttrs m [ "imports" "freeformType" ];
    } // (if m ? freeformType then { inherit (m) freeformType; } else { });

  mergeDecls = a: b: a // mapAttrs (n: v:
    if a ? ${n} && !isOption v && !isOption a.${n} then mergeDecls a.${n} v
    else if a ? ${n} then throw "stub: option `${n}` declared twice"
    else v) b;

  evalModules = { modules, pkgs ? stubPkgs }:
    let
      # nixpkgs.overlays of the configuration applied, as NixOS does.
      overlays = (config.nixpkgs or { }).overlays or null;
      final = foldl' (acc: ov: acc // ov final acc) pkgs (if overlays == null then [ ] else overlays);
      args = { inherit config; pkgs = final; lib = stubLib; options = decls; };
      load = m:
        let
          v = if isPath m || isString m then import m else m;
          r = if isFunction v
            then v (if B.functionArgs v == { } then args else B.intersectAttrs (B.functionArgs v) args)
            else v;
          n = normalize r;
        in [ n ] ++ concatMap load n.imports;
      all = concatMap load modules;
      decls = foldl' mergeDecls { } (map (m: m.options) all);
      config = evalTree [ ] decls (map (m: m.config) all) "generic";
      failed = map (a: a.message) (filter (a: !a.assertion) (if config.assertions or null == null then [ ] else config.assertions));
    in {
      inherit config;
      options = decls;
      inherit failed;
      # As NixOS' system.build.toplevel: refuses to build with a failed assertion.
      checked =
        if failed != [ ] then throw "\nFailed assertions:\n${concatStringsSep "\n" (map (m: "- ${m}") failed)}"
        else config;
    };

  stubLib = {
    inherit mkIf mkMerge mkOverride mkDefault mkForce types evalModules;
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption = name: {
      _type = "option";
      type = types.bool;
      default = false;
      description = "Whether to enable ${name}.";
    };
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    optional = c: x: if c then [ x ] else [ ];
    optionals = c: xs: if c then xs else [ ];
    optionalAttrs = c: a: if c then a else { };
    filterAttrs = pred: a: B.removeAttrs a (filter (n: !(pred n a.${n})) (attrNames a));
    mapAttrs = B.mapAttrs;
    attrValues = B.attrValues;
    fix = f: let x = f x; in x;
  };

  # Just what the module and the flake use of nixpkgs; nothing is built.
  stubPkgs = {
    writeText = name: text: {
      type = "derivation";
      inherit name text;
      outPath = B.toFile name text;
    };
    callPackage = f: extra:
      let fn = if isPath f then import f else f;
      in fn (B.intersectAttrs (B.functionArgs fn) (stubPkgs // extra));
    lib = stubLib;
    rustPlatform.buildRustPackage = attrs: attrs // { type = "derivation"; outPath = "/nix/store/stub-${attrs.pname}-${attrs.version}"; };
    installShellFiles = { type = "derivation"; name = "install-shell-files"; outPath = "/nix/store/stub-install-shell-files"; };
    stdenv.hostPlatform.system = "x86_64-linux";
  };
in
{
  lib = stubLib;
  pkgs = stubPkgs;
  inherit evalModules;
}
