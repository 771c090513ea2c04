/* Random (version 4) UUIDs for machines, volumes and operations, from getrandom(2). */
#pragma once

/* Writes a lowercase UUID text ("1b4e28ba-2fa1-41d2-883f-0016d3cca427") into out. */
void uuid_generate_text(char out[37]);

/* True when s is a UUID in that form. */
#include <stdbool.h>
bool uuid_is_valid(const char *s);
