import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';

import { RunsModel } from './model';
import { RunsSidebar } from './sidebar';
import { RunctlStatus } from './statusbar';

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
<path class="jp-icon3" fill="#616161" d="M3 17h3v4H3zm5-6h3v10H8zm5 3h3v7h-3zm5-9h3v16h-3z"/>
<path class="jp-icon3" fill="#616161" d="M3 12l5-5 5 4 7-8 1 1-8 9-5-4-4 4z"/></svg>`;

export const runctlIcon = new LabIcon({ name: 'runctl:icon', svgstr: ICON_SVG });

/** runctl in JupyterLab: the runs sidebar, its resources tab, the status item. */
const plugin: JupyterFrontEndPlugin<void> = {
  id: 'runctl-jupyter:plugin',
  description: 'Live runs, Stop, records, cloud resources and spend in the sidebar.',
  autoStart: true,
  optional: [ILabShell, IStatusBar],
  activate: (
    app: JupyterFrontEnd,
    labShell: ILabShell | null,
    statusBar: IStatusBar | null
  ) => {
    const model = new RunsModel();
    const open = (path: string) => {
      void app.commands.execute('docmanager:open', { path });
    };
    const sidebar = new RunsSidebar(model, open);
    sidebar.title.icon = runctlIcon;
    sidebar.title.caption = 'runctl runs';
    app.shell.add(sidebar, 'left', { rank: 600 });

    // The "open record" button of a run's summary in a notebook output
    // (data-commandlinker-command, runctl_jupyter/display/summary.py).
    app.commands.addCommand('runctl:open-record', {
      label: 'Open the run record',
      execute: async args => {
        const run = typeof args.run === 'string' ? args.run : '';
        if (run) {
          open(await model.openRecord(run));
        }
      }
    });

    app.commands.addCommand('runctl:show-runs', {
      label: 'Show runctl runs',
      execute: () => app.shell.activateById(sidebar.id)
    });

    if (statusBar) {
      const item = new RunctlStatus(model);
      item.node.addEventListener('click', () => app.shell.activateById(sidebar.id));
      statusBar.registerStatusItem('runctl-jupyter:status', {
        item,
        align: 'left',
        rank: 50
      });
    }
    // The summary polls from the start (status bar); the runs once the sidebar shows.
    model.paused = !sidebar.isVisible;
  }
};

export default plugin;
