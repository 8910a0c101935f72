#!/usr/bin/perl

# Turns src/ngx_http_canary_dashboard.html into the C header that embeds
# it: the page before the "<!--ROWS-->" line and the page after it, as two
# C strings; the status handler prints the rollouts' rows in between.
#
#   perl tools/dashboard2c.pl src/ngx_http_canary_dashboard.html \
#       > src/ngx_http_canary_dashboard.h
#
# `make` runs it when the page changes; t/41-status-explain.t checks
# that the committed header is what it makes.

use strict;
use warnings;

use Digest::SHA ();

my $file = shift or die "usage: $0 page.html\n";
open my $fh, '<', $file or die "$file: $!\n";
my @lines = <$fh>;
close $fh;

my ($mark) = grep { $lines[$_] =~ /^\s*<!--ROWS-->\s*$/ } 0 .. $#lines;
die "$file: no <!--ROWS--> line\n" unless defined $mark;

# Splits an escaped line into pieces that fit 80 columns as "    \"...\"",
# after a space where there is one, never inside an escape sequence; the
# compiler joins adjacent literals, so the bytes are the same.
sub fold {
    my ($s) = @_;
    my @units = $s =~ /(\\.|.)/gs;
    my (@pieces, @cur, $len, $space);
    $len = 0;
    while (@units) {
        my $u = shift @units;
        if ($len + length($u) > 74) {
            my @rest;
            if (defined $space && $space < $#cur) {
                @rest = splice @cur, $space + 1;
            }
            push @pieces, join '', @cur;
            @cur = @rest;
            $len = 0;
            $len += length for @cur;
            undef $space;
            for my $i (0 .. $#cur) { $space = $i if $cur[$i] eq ' '; }
        }
        push @cur, $u;
        $len += length $u;
        $space = $#cur if $u eq ' ';
    }
    push @pieces, join '', @cur;
    return @pieces;
}

# The page's Content-Security-Policy: its one <style> and one <script>
# allowed by their SHA-256 (so no other inline script runs, whatever the
# server printed), requests to its own origin only, never in a frame.
sub csp {
    my ($page) = @_;
    my ($style) = $page =~ m{<style>(.*?)</style>}s
        or die "$file: no <style>\n";
    my ($script) = $page =~ m{<script>(.*?)</script>}s
        or die "$file: no <script>\n";
    my $h = sub { "'sha256-" . Digest::SHA::sha256_base64($_[0]) . "='" };
    return "default-src 'none'; style-src " . $h->($style)
           . "; script-src " . $h->($script) . "; connect-src 'self';"
           . " img-src 'self'; base-uri 'none'; form-action 'none';"
           . " frame-ancestors 'none'";
}

sub cstring {
    my ($name, @l) = @_;
    my $out = "static const char  $name\[\] =\n";
    for my $l (@l) {
        my $s = $l;
        $s =~ s/\\/\\\\/g;
        $s =~ s/"/\\"/g;
        $s =~ s/\?/\\?/g;
        $s =~ s/\t/\\t/g;
        $s =~ s/\n/\\n/g;
        $out .= "    \"$_\"\n" for fold($s);
    }
    $out .= "    \"\"" unless @l;
    $out =~ s/\n\z//;
    return "$out;\n";
}

print <<'HEAD';

/*
 * Generated from src/ngx_http_canary_dashboard.html by
 * tools/dashboard2c.pl: edit the page, then run `make`.
 */


#ifndef _NGX_HTTP_CANARY_DASHBOARD_H_INCLUDED_
#define _NGX_HTTP_CANARY_DASHBOARD_H_INCLUDED_


HEAD
print cstring('ngx_http_canary_dashboard_head', @lines[0 .. $mark - 1]);
print "\n\n";
print cstring('ngx_http_canary_dashboard_tail', @lines[$mark + 1 .. $#lines]);
print "\n\n";
print cstring('ngx_http_canary_dashboard_csp', csp(join '', @lines));
print "\n\n#endif /* _NGX_HTTP_CANARY_DASHBOARD_H_INCLUDED_ */\n";
