// The entry point of the sluice_link_check_<module> executables (CMakeLists.txt): they exist to
// be linked, with every object of one module and only its declared dependencies, never to run.
int main() {
  return 0;
}
