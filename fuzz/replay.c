
/*
 * Copyright (C) ngx_http_canary_module authors
 *
 * Runs a fuzz target's LLVMFuzzerTestOneInput() once on each file named
 * on the command line, without libFuzzer, so that `make test` replays the
 * regression inputs with any C compiler and its sanitizers.
 */


#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
main(int argc, char **argv)
{
    int     i;
    long    n;
    FILE   *f;
    uint8_t *buf;

    for (i = 1; i < argc; i++) {
        f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 1;
        }

        if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0
            || fseek(f, 0, SEEK_SET) != 0)
        {
            perror(argv[i]);
            return 1;
        }

        buf = malloc(n ? n : 1);
        if (buf == NULL || fread(buf, 1, n, f) != (size_t) n) {
            perror(argv[i]);
            return 1;
        }

        fclose(f);

        LLVMFuzzerTestOneInput(buf, n);

        free(buf);
    }

    printf("%s: %d inputs replayed\n", argv[0], argc - 1);

    return 0;
}
