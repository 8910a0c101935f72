#!/usr/bin/perl

# Docs and code kept together. Everything the module offers a user, read
# from the sources (never listed here), must be in the users'
# documentation (README.md and docs/*.md):
#
#   - every directive of the module's command tables, and every directive
#     the canary_rollout block's handler recognises, has a Syntax: block in
#     docs/directives.md with Default: and Context: lines; a top-level
#     directive's Context: is exactly what its command flags allow, an
#     inner one's is canary_rollout;
#   - every parameter of `auto` (the table its parser walks) has a row in
#     the auto section of docs/directives.md;
#   - every embedded variable (and the $canary_variant_<name> prefix) is in
#     the Embedded variables section of docs/directives.md;
#   - every Prometheus metric the status page can emit is in the metrics
#     table of docs/status.md;
#   - every $canary_reason value is in the users' documentation, and every
#     list of reasons there names them all;
#   - every file in conf-examples/ is named in the users' documentation;
#
# and the documentation holds together: every relative link in README.md,
# CHANGELOG.md, docs/ and docs/dev/ resolves to a file and its #anchor to
# a heading; README.md is at most 16 KB and keeps `make test`; the users'
# documentation names no issue numbers, commits or branches.
#
# Needs neither nginx nor Redis. CANARY_DOCS_SRC=/path/to/src reads the
# sources from another tree (e.g. a copy with one directive more).

use strict;
use warnings;

use FindBin;
use File::Basename qw(basename dirname);
use File::Spec;
use Test::More;

my $root = File::Spec->rel2abs("$FindBin::Bin/..");
my $src = $ENV{CANARY_DOCS_SRC} // "$root/src";

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or die "cannot read $f: $!\n";
    local $/;
    my $t = <$fh>;
    close $fh;
    return $t;
}

# --- the sources ---------------------------------------------------------

my @c_files = sort glob "$src/*.c";
die "no C sources in $src\n" unless @c_files;

my %c_text = map { basename($_) => slurp($_) } @c_files;
my $all_c = join "\n", map { $c_text{$_} } sort keys %c_text;

# adjacent string literals joined, as the compiler does: "a_" "b" is "a_b"
(my $all_c_joined = $all_c) =~ s/"\s*\n\s*"//g;

# the bodies of the C functions (nginx style: the name at column 0, the
# body between a "{" and a "}" at column 0)
sub functions {
    my ($text) = @_;
    my %f;
    while ($text =~ /^(\w+)\([^;]*?\)\s*\n\{\n(.*?)^\}/msg) {
        $f{$1} = $2;
    }
    return \%f;
}

my %func;
for my $t (values %c_text) {
    my $f = functions($t);
    @func{ keys %$f } = values %$f;
}

# a static array's initialiser, by its name
sub array_body {
    my ($name) = @_;
    return $1 if $all_c =~ /\b\Q$name\E\s*\[\s*\]\s*=\s*\{(.*?)\n\};/s;
    return undef;
}

sub ngx_strings {
    my ($text) = @_;
    return $text =~ /ngx_string\("([^"]*)"\)/g;
}

# top-level directives: every ngx_command_t array, with its flags

my %ctx_name = (NGX_HTTP_MAIN_CONF => 'http', NGX_HTTP_SRV_CONF => 'server',
                NGX_HTTP_LOC_CONF => 'location');
my (%command, %command_handler);

while ($all_c =~ /ngx_command_t\s+(\w+)\s*\[\s*\]\s*=\s*\{(.*?)\n\};/sg) {
    my $body = $2;
    while ($body =~ /\{\s*ngx_string\("([^"]+)"\),\s*([A-Z0-9_|\s]+),\s*(\w+),/g) {
        my ($name, $flags, $handler) = ($1, $2, $3);
        $command{$name} = [ sort map { $ctx_name{$_} // () }
                            split /\s*\|\s*/, $flags ];
        $command_handler{$name} = $handler;
    }
}

ok(scalar(keys %command) >= 5,
   scalar(keys %command) . ' directives in the command tables');

# directives inside canary_rollout: the table that the handler the block
# installs (cf->handler = ...) walks

my (%inner, %inner_handler);
{
    my $block = $command_handler{canary_rollout} // '';
    my $body = $func{$block} // '';
    my ($handler) = $body =~ /cf->handler\s*=\s*(\w+)\s*;/;
    my $hbody = $func{$handler // ''} // '';
    for my $array ($hbody =~ /\b(\w+)\b/g) {
        my $init = array_body($array) or next;
        next unless $init =~ /ngx_string\(/;
        while ($init =~ /\{\s*ngx_string\("([^"]+)"\),[^,]*,[^,]*,\s*(\w+)/g) {
            $inner{$1} = 1;
            $inner_handler{$1} = $2;
        }
    }
}

ok(scalar(keys %inner) >= 5, scalar(keys %inner)
   . ' directives recognised inside canary_rollout');

# the parameters of "auto": the "name" entries of the table walked by a
# function that the auto directive's handler calls

my %auto_param;
{
    my $body = $func{ $inner_handler{auto} // '' } // '';
    for my $callee ($body =~ /\b(ngx_http_canary_\w+)\s*\(/g) {
        my $cbody = $func{$callee} // next;
        for my $array ($cbody =~ /\b(\w+)\s*\[/g) {
            my $init = array_body($array) or next;
            $auto_param{$_} = 1 for $init =~ /\{\s*"(\w+)"\s*,/g;
        }
    }
}

ok(scalar(keys %auto_param) >= 5, scalar(keys %auto_param)
   . ' parameters of auto');

# embedded variables: every ngx_http_variable_t array; and prefixes, the
# literals "canary_..._" the module builds variable names from

my (%variable, %var_prefix);

while ($all_c =~ /ngx_http_variable_t\s+\w+\s*\[\s*\]\s*=\s*\{(.*?)\n\};/sg) {
    $variable{$_} = 1 for grep { /^[a-z][a-z0-9_]*$/ } ngx_strings($1);
}

$var_prefix{$_} = 1 for $all_c =~ /"(canary_[a-z0-9_]*_)"/g;

ok(scalar(keys %variable) >= 3, scalar(keys %variable) . ' variables, '
   . scalar(keys %var_prefix) . ' prefix');

# metrics: every full name in a literal, and the families and gauges the
# Prometheus renderer prefixes with "nginx_canary_"

my %metric;
{
    my $status = join "\n", map { $c_text{$_} }
                 grep { /^ngx_http_canary_status/ } sort keys %c_text;
    (my $joined = $status) =~ s/"\s*\n\s*"//g;
    $metric{$_} = 1 for $joined =~ /(nginx_canary_[a-z0-9_]*[a-z0-9])/g;

    for my $body (values %{ functions($joined) }) {
        next unless $body =~ /"nginx_canary_"|nginx_canary_%s/;
        $metric{"nginx_canary_$_"} = 1
            for grep { /^[a-z][a-z0-9_]*$/ } ngx_strings($body);
    }
}

ok(scalar(keys %metric) >= 10, scalar(keys %metric) . ' metrics');

# $canary_reason values

my @reasons = ngx_strings(array_body('ngx_http_canary_reason_names') // '');
ok(@reasons >= 5, scalar(@reasons) . ' reasons');

my @examples = map { basename($_) } sort glob "$root/conf-examples/*";
ok(@examples >= 5, scalar(@examples) . ' files in conf-examples/');

# --- the documentation ---------------------------------------------------

my @user_docs = ("$root/README.md", sort glob "$root/docs/*.md");
my @all_docs = (@user_docs, "$root/CHANGELOG.md",
                sort glob "$root/docs/dev/*.md");
my %doc = map { $_ => slurp($_) } grep { -f } @all_docs;
my $users = join "\n", map { $doc{$_} // '' } @user_docs;
my $directives = $doc{"$root/docs/directives.md"} // '';
my $status = $doc{"$root/docs/status.md"} // '';

ok(-f "$root/$_", "$_ exists") for qw(README.md CHANGELOG.md
    docs/directives.md docs/status.md);

# a section of a page: from a heading to the next of its level or above
sub section {
    my ($text, $re) = @_;
    return '' unless $text =~ /^(#+) $re[^\n]*\n(.*)/ms;
    my ($level, $rest) = (length $1, $2);
    $rest =~ s/^#{1,$level} .*//ms;
    return $rest;
}

# the Syntax: blocks of directives.md, with their Default: and Context:
my %block;
{
    my $cur;
    for (split /\n/, $directives) {
        if (/^ {4}Syntax:\s+([\w.]+)/) {
            $cur = { name => $1 };
            push @{ $block{$1} }, $cur;
        } elsif ($cur && /^ {4}Default:\s*(\S.*)$/) {
            $cur->{default} = $1;
        } elsif ($cur && /^ {4}Context:\s*(\S.*)$/) {
            $cur->{context} = $1;
            undef $cur;
        }
    }
}

sub contexts { [ sort split /\s*,\s*/, $_[0] // '' ] }

for my $name (sort keys %command) {
    my @b = grep { defined $_->{context} && $_->{context} ne 'canary_rollout' }
            @{ $block{$name} // [] };
    ok(@b, "directives.md: Syntax: block of $name") or next;
    ok(defined $b[0]{default}, "directives.md: Default: of $name");
    is_deeply(contexts($b[0]{context}), $command{$name},
              "directives.md: Context: of $name is what its flags allow");
}

for my $name (sort keys %inner) {
    my @b = grep { ($_->{context} // '') eq 'canary_rollout' }
            @{ $block{$name} // [] };
    ok(@b, "directives.md: Syntax: block of $name, Context: canary_rollout")
        or next;
    ok(defined $b[0]{default}, "directives.md: Default: of $name");
}

my $auto = section($directives, 'auto\b');
for my $p (sort keys %auto_param) {
    ok($auto =~ /^\|\s*`\Q$p\E=/m,
       "directives.md: a row for auto's $p= in the auto section");
}

my $vars = section($directives, 'Embedded variables');
for my $v (sort keys %variable) {
    ok($vars =~ /\$\Q$v\E(?![a-z0-9_])/,
       "directives.md: \$$v in Embedded variables");
}
for my $p (sort keys %var_prefix) {
    ok($vars =~ /\$\Q$p\E</,
       "directives.md: \$$p<name> in Embedded variables");
}

# metrics: in a table row of status.md (a histogram family by its series)
for my $m (sort keys %metric) {
    ok($status =~ /^\|[^\n]*(?<![A-Za-z0-9_])\Q$m\E(?:_(?:bucket|sum|count))?(?![A-Za-z0-9_])/m,
       "status.md: $m in the metrics table");
}

for my $r (@reasons) {
    ok($users =~ /`\Q$r\E`/, "users' docs: reason `$r`");
}

# a paragraph that lists reasons lists them all
for my $f (@user_docs) {
    my $rel = File::Spec->abs2rel($f, $root);
    my $n = 0;
    for my $para (split /\n\s*\n/, $doc{$f} // '') {
        next unless $para =~ /\bno_key\b/ && $para =~ /\bstable_users\b/
                    && $para =~ /\bwindow\b/;
        $n++;
        my @missing = grep { $para !~ /(?<![A-Za-z0-9_])\Q$_\E(?![A-Za-z0-9_])/ }
                      @reasons;
        ok(!@missing, "$rel: list of reasons $n is complete")
            or diag("missing: @missing in:\n$para");
    }
}

for my $e (@examples) {
    ok($users =~ /\Q$e\E/, "users' docs: conf-examples/$e");
}

# --- links and anchors ---------------------------------------------------

sub slug {
    my ($h) = @_;
    $h =~ s/\[([^\]]*)\]\([^)]*\)/$1/g;
    $h = lc $h;
    $h =~ s/^\s+|\s+$//g;
    $h =~ s/[^\w\- ]//g;
    $h =~ s/ /-/g;
    return $h;
}

my %anchors;
sub anchors {
    my ($file) = @_;
    return $anchors{$file} if $anchors{$file};
    my %a;
    my %seen;
    my $in_code = 0;
    for (split /\n/, slurp($file)) {
        if (/^(#+)\s+(.*?)\s*#*\s*$/) {
            my $s = slug($2);
            my $n = $seen{$s}++;
            $a{ $n ? "$s-$n" : $s } = 1;
        }
        $a{$1} = 1 while /<a\s+(?:id|name)="([^"]+)"/g;
    }
    return $anchors{$file} = \%a;
}

for my $f (grep { $doc{$_} } @all_docs) {
    my $rel = File::Spec->abs2rel($f, $root);
    my $dir = dirname($f);
    for my $line (split /\n/, $doc{$f}) {
        next if $line =~ /^(?: {4}|\t)/;            # code blocks
        (my $text = $line) =~ s/`[^`]*`//g;          # code spans
        while ($text =~ /\]\(([^)\s]+)\)/g) {
            my $link = $1;
            next if $link =~ /^[a-z][a-z0-9+.-]*:/i;    # http:, mailto:
            my ($path, $anchor) = split /#/, $link, 2;
            my $target = $path eq '' ? $f
                       : File::Spec->rel2abs($path, $dir);
            ok(-e $target, "$rel: link $link resolves") or next;
            next unless defined $anchor && $target =~ /\.md$/ && -f $target;
            ok(anchors($target)->{$anchor},
               "$rel: anchor #$anchor in "
               . File::Spec->abs2rel($target, $root));
        }
    }
}

# --- the README and the users' pages ------------------------------------

my $readme = $doc{"$root/README.md"} // '';
cmp_ok(length($readme), '<=', 16384, 'README.md is at most 16 KB');
like($readme, qr/\bmake test\b/, 'README.md keeps `make test`');
ok($users =~ /\((?:docs\/)?dashboard\.png\)/, 'docs/dashboard.png is shown');

for my $f (@user_docs) {
    my $rel = File::Spec->abs2rel($f, $root);
    my $t = $doc{$f} // '';
    my @bad = ($t =~ /\b(issue\s+#?\d+|this branch|commit\s+[0-9a-f]{7,40}\b|(?:on|against)\s+main\b)/gi);
    ok(!@bad, "$rel: no issue numbers, commits or branches")
        or diag("found: @bad");
}

done_testing();
