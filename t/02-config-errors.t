#!/usr/bin/perl

# Config errors: `nginx -t` refuses bad configs naming file and line, and
# accepts good ones.  In each case the lines marked "#!" are the ones the
# error may point at (the first one listed is the preferred one).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use CanaryTest;

need_module();

my $upstreams = <<'EOF';
upstream s { server 127.0.0.1:1; }
upstream c { server 127.0.0.1:2; }
EOF

sub rollout {
    my (%f) = (name => 'checkout', key => '$http_x_user_id', stable => 's',
               canary => 'c', percent => 10, @_);
    my $text = "canary_rollout $f{name} {\n";
    for my $d (qw(key stable canary percent salt hash)) {
        next unless defined $f{$d};
        $text .= "    $d $f{$d};" . ($f{mark} && $f{mark} eq $d ? ' #!' : '')
                 . "\n";
    }
    return $text . "}\n";
}

sub server {
    my ($use) = @_;
    $use //= 'canary checkout;';
    return "server {\n    listen 127.0.0.1:%%PORT%%;\n"
         . "    location / {\n        $use\n        return 200;\n    }\n}\n";
}

my $zone = "canary_zone 1m;\n";

my @bad = (
    ['unknown rollout in canary', qr/nosuch/,
     $zone . rollout() . server('canary nosuch; #!')],

    ['duplicate rollout', qr/checkout/,
     $zone . rollout() . rollout() =~ s/\{\n/{ #!\n/r . server()],

    (map {
        my $v = $_;
        ["percent $v", qr/\Q$v\E/,
         $zone . rollout(percent => $v, mark => 'percent') . server()]
    } qw(101 -1 1.234 abc 100.01 1e2)),

    ['missing stable', qr/stable/,
     $zone . rollout(stable => undef) =~ s/\{\n/{ #!\n/r =~ s/^\}$/} #!/mr
     . server()],

    ['missing canary', qr/canary/,
     $zone . rollout(canary => undef) =~ s/\{\n/{ #!\n/r =~ s/^\}$/} #!/mr
     . server()],

    ['canary without canary_zone', qr/canary_zone/,
     rollout() =~ s/\{\n/{ #!\n/r . server('canary checkout; #!')],

    ['unknown hash', qr/sha1/,
     $zone . rollout(hash => 'sha1', mark => 'hash') . server()],

    (map {
        my ($a, $b) = @$_;
        ["rollouts \"$a\" and \"$b\" share a variable name",
         qr/"\Q$a\E" and "\Q$b\E" would both be "\$canary_variant_new_checkout"/,
         $zone . rollout(name => $a) . rollout(name => $b) =~ s/^\}$/} #!/mr
         . server("canary $b;")]
    } ['new-checkout', 'new.checkout'], ['new_checkout', 'new-checkout'],
      ['new-checkout', 'new_checkout']),
);

my @good = (
    ['valid', $zone . rollout() . server()],
    ['percent 0, 100, 12.5, 0.01',
     $zone . join('', map { rollout(name => "r$_->[0]", percent => $_->[1]) }
                      [1, 0], [2, 100], [3, 12.5], [4, 0.01])
     . server('canary r3;')],
    ['salt, hash murmur3 and unleash, several keys',
     $zone . rollout(salt => 'x1', hash => 'murmur3',
                     key => '$cookie_uid $http_x_user_id $remote_addr')
     . rollout(name => 'u', hash => 'unleash', percent => 73)
     . server('canary u;')],
    ['$canary_variant_NAME outside a canary location',
     $zone . rollout() . server('add_header X-F $canary_variant_checkout;')],
    ['$canary_variant_new_checkout for rollout "new-checkout"',
     $zone . rollout(name => 'new-checkout')
     . server('add_header X-F $canary_variant_new_checkout;')],
);

for my $case (@bad) {
    my ($name, $msg, $body) = @$case;
    my ($rc, $out, $conf) = nginx_t($upstreams . $body);
    note "$name:\n$conf" if $ENV{CANARY_DEBUG};

    my @cl = split /\n/, $conf;
    my @lines = grep { $cl[$_ - 1] =~ /#!/ } 1 .. @cl;
    my ($text, $file, $at) = conf_error($out);
    undef $at unless ($file // '') =~ /nginx\.conf$/;

    isnt($rc, 0, "$name: nginx -t fails");
    ok(defined $at && grep({ $_ == $at } @lines),
       "$name: error at nginx.conf:" . join('|', @lines))
        or diag $out;
    like($text // '', $msg, "$name: message names the culprit")
        or diag $out;
}

for my $case (@good) {
    my ($name, $body) = @$case;
    my ($rc, $out) = nginx_t($upstreams . $body);
    is($rc, 0, "$name: nginx -t passes") or diag $out;
    like($out, qr/test is successful/, "$name: test is successful");
}

done();
