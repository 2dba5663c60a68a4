/* A python3 whose interpreter is the shared libpython (as Triton's Python-backend stub embeds it), to compare
   against the statically linked /usr/bin/python3.X on the same script. argv[1]: the libpython to load. */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: %s LIBPYTHON args...\n", argv[0]); return 2; }
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
  if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 2; }
  int (*bytes_main)(int, char **) = (int (*)(int, char **))dlsym(lib, "Py_BytesMain");
  if (!bytes_main) { fprintf(stderr, "%s\n", dlerror()); return 2; }
  argv[1] = argv[0];
  return bytes_main(argc - 1, argv + 1);
}
