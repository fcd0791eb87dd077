"""scripts/check-deps.py on small source trees: it passes a tree that keeps its declared
directions and fails, naming file:line, each way of breaking them."""

import importlib.util
import io
import os
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, '..', '..', 'scripts', 'check-deps.py')
spec = importlib.util.spec_from_file_location('check_deps', SCRIPT)
check_deps = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_deps)


class CheckDepsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.src = os.path.join(self.dir.name, 'src')
        self.modules = os.path.join(self.dir.name, 'sluice-modules.txt')
        self.declare({'core': [], 'config': ['core'], 'gateway': ['core', 'config']})
        self.write('core/log.h', '#pragma once\n#include <string>\n')
        self.write('config/config.h', '#pragma once\n#include "core/log.h"\n')
        self.write('gateway/worker.cc',
                   '#include "gateway/worker.h"\n#include "config/config.h"\n#include "core/log.h"\n'
                   '#include <net/if.h>\n')
        self.write('gateway/worker.h', '#pragma once\n')
        self.write('gateway/sub/part.cc', '#include "gateway/worker.h"\n#include "local.h"\n')

    def tearDown(self):
        self.dir.cleanup()

    def declare(self, graph):
        with open(self.modules, 'w') as f:
            f.write('# module: allowed modules\n')
            for m, deps in graph.items():
                f.write(f'{m}: {" ".join(deps)}\n')

    def write(self, rel, text):
        path = os.path.join(self.src, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)

    def run_check(self, tests=None):
        out, err = io.StringIO(), io.StringIO()
        args = ['--modules', self.modules, '--src', self.src]
        if tests:
            args += ['--tests', tests]
        with redirect_stdout(out), redirect_stderr(err):
            rc = check_deps.main(args)
        return rc, err.getvalue()

    def test_a_modules_tests_may_use_what_it_uses_and_no_more(self):
        tests = os.path.join(self.dir.name, 'tests')
        for rel, text in {
                'gateway/worker_test.cc': '#include "gateway/worker.h"\n#include "core/log.h"\n',
                'config/config_test.cc': '#include "config/config.h"\n#include "core/log.h"\n'
                                         '#include "unit/helper.h"\n',
                'unit/helper.h': '#include "gateway/worker.h"\n'}.items():
            path = os.path.join(tests, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, 'w') as f:
                f.write(text)
        self.assertEqual(self.run_check(tests), (0, ''))
        # core does not use config: a core test that includes it breaks the direction.
        path = os.path.join(tests, 'core', 'log_test.cc')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write('#include "core/log.h"\n#include "config/config.h"\n')
        rc, err = self.run_check(tests)
        self.assertEqual(rc, 1)
        self.assertIn(f'{path}:2: a test of module core includes "config/config.h", which core '
                      f'does not use (it may use: core)', err)

    def test_a_tree_that_keeps_its_directions_passes(self):
        rc, err = self.run_check()
        self.assertEqual((rc, err), (0, ''))

    def test_an_include_against_the_direction_fails_naming_file_and_line(self):
        self.write('config/loader.cc', '#include "config/config.h"\n\n#include "gateway/worker.h"\n')
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('config/loader.cc:3: module config includes "gateway/worker.h" but may use '
                      'only: core', err)

    def test_angle_brackets_count_when_the_header_is_ours(self):
        self.write('core/clock.h', '#include <gateway/worker.h>\n')
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('core/clock.h:1: module core includes "gateway/worker.h" but may use only: '
                      'nothing', err)

    def test_an_include_that_climbs_out_fails(self):
        self.write('core/clock.h', '#include "../gateway/worker.h"\n')
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('core/clock.h:1: #include "../gateway/worker.h" climbs out', err)

    def test_a_folder_that_is_not_declared_fails(self):
        self.write('billing/cost.cc', '#include "core/log.h"\n')
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('billing/: folder is not a module', err)

    def test_a_declared_cycle_fails(self):
        self.declare({'core': ['gateway'], 'config': ['core'], 'gateway': ['core', 'config']})
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('modules form a cycle: core -> gateway -> core', err)

    def test_an_unknown_dependency_fails(self):
        self.declare({'core': [], 'config': ['core', 'nett'], 'gateway': ['core', 'config']})
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('module config declares nett, which is not a module', err)

    def test_a_file_that_would_hide_a_system_header_fails(self):
        if not os.path.isfile('/usr/include/net/if.h'):
            self.skipTest('no <net/if.h> on this system')
        self.declare({'core': [], 'config': ['core'], 'gateway': ['core', 'config'], 'net': []})
        self.write('net/if.h', '#pragma once\n')
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('net/if.h: shadows the system header <net/if.h>', err)

    def test_every_problem_is_reported_at_once(self):
        self.write('core/a.h', '#include "config/config.h"\n')
        self.write('core/b.h', '#include "gateway/worker.h"\n')
        rc, err = self.run_check()
        self.assertEqual(rc, 1)
        self.assertIn('core/a.h:1:', err)
        self.assertIn('core/b.h:1:', err)
        self.assertIn('check-deps: 2 problem(s)', err)


if __name__ == '__main__':
    unittest.main()
